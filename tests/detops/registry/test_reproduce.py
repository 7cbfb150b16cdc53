"""The comparison table without training: official release files registered through the platform's
own path (``detops register --weights``, ``detops reproduce``) and latency-only rows (``detops
benchmark``), on release-layout files and a COCO 2017 directory made here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from detops.cli import main
from detops.errors import DetopsError
from detops.registry.reproduce import check_coco2017, release_files
from detops.settings import get_settings
from tests.officials import write_coco2017, write_release


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project of its own: home, embedded MLflow store, and the ephemeral Prefect API."""
    monkeypatch.setenv("DETOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_the_coco_layout_is_checked_and_what_is_missing_named(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    with pytest.raises(DetopsError, match=r"--coco .*coco: directory not found"):
        check_coco2017(root)
    root.mkdir()
    with pytest.raises(DetopsError, match=r"missing annotations/instances_val2017.json and val2017"):
        check_coco2017(root)
    (root / "val2017").mkdir()
    with pytest.raises(DetopsError, match=r"missing annotations/instances_val2017.json \("):
        check_coco2017(root)
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(DetopsError, match=r"instances_val2017.json"):
        check_coco2017(root)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DetopsError, match=r"instances_val2017.json"):
        check_coco2017(root)
    assert check_coco2017(write_coco2017(tmp_path / "good", images=1, size=64)) == tmp_path / "good"


def test_release_files_are_found_by_the_authors_names(tmp_path: Path) -> None:
    with pytest.raises(DetopsError, match="--weights-dir .*: directory not found"):
        release_files(tmp_path / "none", ["damo_yolo_t"])
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "damo_yolo_t.pth").write_bytes(b"x")  # our name, not the authors'
    with pytest.raises(
        DetopsError, match=r"none of the release files .*damoyolo_tinynasL20_T_420.pth \(damo_yolo_t\)"
    ):
        release_files(tmp_path / "w", ["damo_yolo_t", "rtdetrv2_s"])
    (tmp_path / "w" / "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth").write_bytes(b"x")
    assert release_files(tmp_path / "w", ["damo_yolo_t", "rtdetrv2_s"]) == {
        "rtdetrv2_s": tmp_path / "w" / "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth"
    }


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "register takes a RUN or --weights FILE --variant V --data ROOT, not both or neither"),
        (["0" * 32, "--weights", "w.pth"], "not both or neither"),
        (
            ["--weights", "w.pth", "--variant", "damo_yolo_t"],
            "register --weights needs --variant V and --data ROOT",
        ),
        (["0" * 32, "--variant", "damo_yolo_t"], "--variant and --data go with --weights"),
    ],
)
def test_register_takes_a_run_or_a_release_file(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["register", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {needle}" or (err.startswith("error: ") and needle in err)


def test_a_release_file_of_another_variant_is_refused_and_nothing_registered(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    coco = write_coco2017(tmp_path / "coco", images=1, size=64)
    wrong = write_release("damo_yolo_t", tmp_path / "w")  # T's tensors offered as S
    assert main(["register", "--weights", str(wrong), "--variant", "damo_yolo_s", "--data", str(coco)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {wrong}: ") and "does not match damo_yolo_s" in err[0]
    assert not list(home.glob("registry/*/best.pt")), "an imported file was left behind"
    client = MlflowClient(tracking_uri=get_settings().mlflow_tracking_uri)
    assert client.search_registered_models() == []


@pytest.mark.slow  # 12 s: two real variants exported and profiled on two backends
def test_latency_only_rows_fill_the_columns_that_need_no_training(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--variants", "damo_yolo_t,rtdetrv2_s", "--img-size", "128", "--seconds", "0.2"]
    assert main(["benchmark", *args, "--backends", "ort,openvino,tensorrt"]) == 0
    out = capsys.readouterr().out
    assert "TensorRT: TensorRT is not installed" in out and "unavailable" in out
    assert main(["report", "--no-log"]) == 0
    table = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in capsys.readouterr().out.splitlines()
    }
    for variant in ("damo_yolo_t", "rtdetrv2_s"):
        cells = table[f"{variant} (untrained, latency only)"]
        assert cells[1] == "128 (pub. 640)" and cells[2].startswith("(pub. ")  # no mAP: untrained
        assert (
            cells[3].split()[0].replace(".", "").isdigit() and cells[4].split()[0].replace(".", "").isdigit()
        )
        assert cells[6].split()[0] != "(pub." and cells[7].split()[0] != "(pub."  # params, GFLOPs
    # measured by the variants' own counts: T's params are the published exact count (no flag)
    assert "Δ" not in table["damo_yolo_t (untrained, latency only)"][6]
    assert table["damo_yolo_s"][3] == ""  # not benchmarked: blank
    report = json.loads((home / "report" / "report.json").read_text())
    row = next(r for r in report if r["model"] == "rtdetrv2_s")
    assert row["source"] == "untrained, latency only" and row["map"] is None
    assert set(row["latency_env"]) == {"ort", "openvino"}


@pytest.mark.slow
def test_reproduce_registers_official_files_on_coco_and_reports_them(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two release files (DAMO-YOLO-T, RT-DETRv2-S) end to end at 640 through the ``reproduce``
    flow on Prefect's ephemeral API: imported, evaluated on val2017 (PyTorch, ORT, OpenVINO),
    exported, profiled, registered as official, reported with the published figures and flags."""
    from mlflow import MlflowClient

    from detops.fileio import sha256_file

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    coco = write_coco2017(tmp_path / "coco", images=2, size=160)
    weights = tmp_path / "releases"
    files = {v: write_release(v, weights, seed=i) for i, v in enumerate(("damo_yolo_t", "rtdetrv2_s"))}
    args = ["--coco", str(coco), "--weights-dir", str(weights), "--profile-seconds", "0.3"]
    assert main(["reproduce", *args]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "release files: damo_yolo_t <- damoyolo_tinynasL20_T_420.pth, rtdetrv2_s <- rtdetrv2_r18vd" in out
    assert "TensorRT build, profile and engine evaluation skipped" in out  # no t4 worker here
    client = MlflowClient(tracking_uri=get_settings().mlflow_tracking_uri)
    for variant, path in files.items():
        (version,) = client.search_model_versions(f"name='detops-{variant}'")
        tags = version.tags
        assert tags["detops.source"] == "official" and tags["detops.source_sha256"] == sha256_file(path)
        assert tags["detops.eval_data"] == "coco_val2017" and tags["detops.img_size"] == "640"
        assert {"detops.map.checkpoint", "detops.map.ort", "detops.map.openvino"} <= set(tags)
        assert {"detops.latency_ms.ort", "detops.latency_ms.openvino"} <= set(tags)
        # the imported weights are the run's checkpoint, as a trained run's best.pt is
        assert [f.path for f in client.list_artifacts(version.run_id, "checkpoints")] == [
            "checkpoints/best.pt"
        ]
    report = {r["model"]: r for r in json.loads((home / "report" / "report.json").read_text())}
    for variant in files:
        row = report[variant]
        assert row["source"] == "v1 latest, no champion" and row["map_on_coco"] and row["map"] is not None
    # random weights score far below the paper on COCO: the mAP cells are flagged
    lines = [line for line in out.splitlines() if line.startswith(("| damo_yolo_t (v1", "| rtdetrv2_s (v1"))]
    assert len(lines) == 2 and all(line.split(" | ")[2].endswith("Δ") for line in lines)
    # a second run refuses a mismatched file in the directory: the import's one line, nothing added
    (weights / "damoyolo_tinynasL20_T_420.pth").unlink()
    write_release("damo_yolo_s", tmp_path / "s", name="damoyolo_tinynasL20_T_420.pth")
    (tmp_path / "s" / "damoyolo_tinynasL20_T_420.pth").rename(weights / "damoyolo_tinynasL20_T_420.pth")
    assert main(["reproduce", *args, "--variants", "damo_yolo_t"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "does not match damo_yolo_t" in err[-1]
    assert len(client.search_model_versions("name='detops-damo_yolo_t'")) == 1
