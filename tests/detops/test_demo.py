"""The main job end to end on a scratch project: every step runs for real, on tiny sizes."""

from pathlib import Path

import pytest

from detops.demo import DemoConfig, run_demo
from detops.errors import DetopsError
from detops.settings import Settings

TINY = DemoConfig(
    train_images=6,
    val_images=3,
    synth_size=96,
    runs=(("damo_yolo_tiny", 1), ("rtdetrv2_tiny", 1)),
    img_size=64,
    batch_size=3,
    profile_seconds=0.05,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:dvc.*")


def test_demo_synthesises_validates_versions_trains_and_evaluates(tmp_path, make_dvc_project):
    project = make_dvc_project(tmp_path / "project")
    settings = Settings(project_root=project)
    lines: list[str] = []
    result = run_demo(settings=settings, config=TINY, echo=lines.append)

    assert (project / "data.dvc").is_file()
    assert len(result["version"]["md5"]) == 32 and result["version"]["files"] == 6 + 3 + 2
    assert any(Path(settings.dvc_local_remote).rglob("*")), "the local remote received the push"
    assert set(result["stats"]) == {"damo_yolo_tiny", "rtdetrv2_tiny"}
    for variant, stats in result["stats"].items():
        assert 0.0 <= stats["AP"] <= 1.0 and len(stats["stats"]) == 12
        assert Path(result["runs"][variant]["checkpoints"]["best"]).is_file()
    text = "\n".join(lines)
    assert "dataset version " + result["version"]["md5"] in text
    assert text.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all") == 2
    # Deploy: both ONNX artifacts beside their checkpoints, evaluated against them, profiled twice.
    assert set(result["deploy"]) == {"damo_yolo_tiny", "rtdetrv2_tiny"}
    for variant, deployed in result["deploy"].items():
        best = Path(result["runs"][variant]["checkpoints"]["best"])
        assert Path(deployed["onnx"]) == best.with_suffix(".onnx") and best.with_suffix(".onnx").is_file()
        assert abs(deployed["evaluation"]["delta"]["AP"]) <= 1e-3
        assert deployed["evaluation"]["reference"]["AP"] == pytest.approx(
            result["stats"][variant]["AP"], abs=1e-3
        )
        assert set(deployed["profiles"]) == {"ort", "openvino"}
    table = text[text.index("Deployed artifacts") :].splitlines()
    assert "mAP (PyTorch)" in table[1] and "CPU ms (OpenVINO)" in table[1]
    assert [row.split()[0] for row in table[2:4]] == ["damo_yolo_tiny", "rtdetrv2_tiny"]
    # Registry: both registered in the settings' MLflow store, promoted, reported, UI command printed.
    from detops.registry.client import CHAMPION, RegistryClient

    assert result["registry"]["decisions"] == {"damo_yolo_tiny": "promoted", "rtdetrv2_tiny": "promoted"}
    client = RegistryClient(tracking_uri=settings.mlflow_tracking_uri)
    for variant, version in result["registry"]["versions"].items():
        assert client.alias_version(f"detops-{variant}", CHAMPION) == version
    assert "| damo_yolo_tiny (v1 champion) |" in text and "detops ui" in text.splitlines()[-1]


def test_demo_stops_before_training_when_data_is_invalid(tmp_path, make_dvc_project, monkeypatch):
    project = make_dvc_project(tmp_path / "project")
    import detops.data.synth as synth

    real = synth.synthesize

    def corrupting(out, **options):
        summary = real(out, **options)
        next(Path(out, "val").glob("*.jpg")).unlink()  # an annotated image file goes missing
        return summary

    monkeypatch.setattr(synth, "synthesize", corrupting)
    lines: list[str] = []
    with pytest.raises(DetopsError, match="failed validation"):
        run_demo(settings=Settings(project_root=project), config=TINY, echo=lines.append)
    assert not (project / "data.dvc").exists()
    assert not any("training" in line for line in lines)
