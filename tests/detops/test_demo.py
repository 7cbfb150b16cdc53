"""The main job end to end on a scratch project (``detops demo --no-flow``): every step runs for real,
on tiny sizes, tracked in a real MLflow store."""

import logging
import re
from pathlib import Path

import pytest

from detops.demo import DemoConfig, closing_text, run_demo, stage_rows, stage_table
from detops.errors import DetopsError
from detops.settings import Settings

TINY = DemoConfig(
    train_images=6,
    val_images=3,
    synth_size=96,
    runs=(("damo_yolo_tiny", 2), ("rtdetrv2_tiny", 1)),
    img_size=64,
    batch_size=3,
    profile_seconds=0.05,
)

# Under pytest-xdist the module runs in one worker (tests/conftest.py groups modules with
# module-scoped fixtures): the tiny demo is built once, not once per worker.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:dvc.*")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict, str]:
    """One tiny demo run, shared by the tests below: (settings, result, what it logged)."""
    from tests.conftest import make_dvc_project_at

    project = make_dvc_project_at(tmp_path_factory.mktemp("demo") / "project")
    settings = Settings(project_root=project, track=True)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(level=logging.INFO)
    logger = logging.getLogger("detops")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        result = run_demo(settings=settings, config=TINY)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return settings, result, "\n".join(records)


def test_demo_synthesises_validates_versions_trains_and_deploys(demo) -> None:
    settings, result, text = demo
    project = Path(settings.project_root)
    assert (project / "data.dvc").is_file()
    assert len(result["dataset"]["md5"]) == 32 and result["dataset"]["files"] == 6 + 3 + 2
    assert any(Path(settings.dvc_local_remote).rglob("*")), "the local remote received the push"
    assert "dataset version " + result["dataset"]["md5"] in text
    assert "detops-damo_yolo_tiny v1: promoted; champion v1" in text
    # one line per epoch per variant, no pycocotools print-out
    assert len(re.findall(r"^damo_yolo_tiny +epoch \d/2 ", text, re.M)) == 2
    assert len(re.findall(r"^rtdetrv2_tiny +epoch 1/1 ", text, re.M)) == 1
    assert "Average Precision" not in text
    # Deploy: both ONNX artifacts beside their checkpoints, evaluated on both backends, profiled twice.
    assert set(result["deployed"]) == {"damo_yolo_tiny", "rtdetrv2_tiny"}
    for variant, deployed in result["deployed"].items():
        best = Path(result["runs"][variant]["checkpoints"]["best"])
        assert Path(deployed["onnx"]) == best.with_suffix(".onnx") and best.with_suffix(".onnx").is_file()
        assert set(deployed["evaluations"]) == {"ort", "openvino"}
        ort = deployed["evaluations"]["ort"]
        assert abs(ort["delta"]["AP"]) <= 1e-3
        # the checkpoint was scored once and shared: the same reference for both backends
        assert deployed["evaluations"]["openvino"]["reference"] == ort["reference"]
        assert set(deployed["profiles"]) == {"ort", "openvino"}


def test_each_training_is_one_mlflow_run_the_version_points_at(demo) -> None:
    from mlflow import MlflowClient

    from detops.registry.client import CHALLENGER, CHAMPION, RegistryClient

    settings, result, _ = demo
    mlflow = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    registry = RegistryClient(tracking_uri=settings.mlflow_tracking_uri)
    assert [d["decision"] for d in result["decisions"]] == ["promoted", "promoted"]
    for reg in result["registered"]:
        variant = reg["variant"]
        run_id = result["runs"][variant]["run_id"]
        assert reg["run_id"] == run_id, "the version points at the training's own run"
        run = mlflow.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params["epochs"] == str(dict(TINY.runs)[variant])
        assert run.data.tags["detops.dataset_digest"] == result["dataset"]["md5"]
        n = dict(TINY.runs)[variant]
        due = [e for e in range(1, n + 1) if e % TINY.eval_interval == 0 or e == n]
        assert [m.step for m in mlflow.get_metric_history(run_id, "val/AP")] == due, (
            "one mAP point per evaluation"
        )
        assert len(mlflow.get_metric_history(run_id, "train/loss")) == n, "one loss point per epoch"
        metrics = run.data.metrics
        for key in (
            "final/AP",
            "final/AP50",
            "eval/best/ort/AP",
            "eval/best/openvino/AP",
            "eval/best/ort/delta/AP",
        ):
            assert key in metrics, key
        assert any(k.startswith("profile/best/openvino/model/") for k in metrics)
        assert any(k.startswith("export/best/max_rel_error/") for k in metrics)
        assert run.inputs.dataset_inputs, "the dataset is the run's input"
        artifacts = {a.path for a in mlflow.list_artifacts(run_id, "plots")}
        assert {"plots/loss.png", "plots/map.png"} <= artifacts
        version = mlflow.get_model_version(reg["model"], str(reg["version"]))
        assert version.run_id == run_id
        assert registry.alias_version(reg["model"], CHAMPION) == reg["version"]
        assert registry.alias_version(reg["model"], CHALLENGER) is None, (
            "a promoted version is not challenger"
        )


def test_export_on_another_machine_fetches_the_checkpoint_by_run_id(demo, tmp_path: Path) -> None:
    """A worker without the training's run directory exports the MLflow run's best checkpoint."""
    import torch

    from detops.deploy.pipeline import export_run
    from detops.errors import DetopsError
    from detops.tracking.runs import fetch_run_artifact

    settings, result, _ = demo
    run = result["runs"]["damo_yolo_tiny"]
    elsewhere = settings.model_copy(update={"home": tmp_path / "worker-home"})
    gone = {**run, "checkpoints": {**run["checkpoints"], "best": str(tmp_path / "not-here" / "best.pt")}}
    artifact = export_run(gone, settings=elsewhere)
    fetched = tmp_path / "worker-home" / "runs" / f"mlflow-{run['run_id']}" / "best.pt"
    assert artifact["checkpoint"] == str(fetched) and Path(artifact["onnx"]).parent == fetched.parent
    original = torch.load(run["checkpoints"]["best"], map_location="cpu", weights_only=False)
    copy = torch.load(fetched, map_location="cpu", weights_only=False)
    assert all(torch.equal(original["model"][k], copy["model"][k]) for k in original["model"])
    assert not list(fetched.parent.glob("*.partial"))
    # registering by run id on that worker reads the same fetched checkpoint, not a second download
    from detops.registry.client import RegistryClient
    from detops.registry.register import _resolve_run

    inode = fetched.stat().st_ino
    client = RegistryClient(tracking_uri=settings.mlflow_tracking_uri)
    run_dir = Path(run["run_dir"])
    hidden = tmp_path / "hidden-run-dir"
    run_dir.rename(hidden)  # as on another machine: the run's directory tag names nothing here
    try:
        files = _resolve_run(run["run_id"], client=client, settings=elsewhere)
    finally:
        hidden.rename(run_dir)
    assert files.best == fetched and fetched.stat().st_ino == inode
    assert files.config["variant"] == "damo_yolo_tiny" and files.run_id == run["run_id"]
    with pytest.raises(
        DetopsError, match=f"MLflow run {run['run_id']} .*cannot fetch checkpoints/nothing.pt"
    ):
        fetch_run_artifact(run["run_id"], "checkpoints/nothing.pt", settings=elsewhere)


def test_the_closing_text_has_the_tables_and_the_stage_times(demo) -> None:
    _, result, _ = demo
    text = closing_text(result, total_s=100.0, log_file=Path("/x/demo.log"))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("variant"))
    assert "mAP OpenVINO" in header and "ms ORT" in header
    assert "| damo_yolo_tiny (v1 champion) |" in text and "[tensorrt]" in text
    assert "Full log: /x/demo.log" in text and "detops ui" in lines[-1]
    assert [name for name, _ in result["stages"]][:3] == ["synthesise data", "validate data", "version data"]
    assert "train rtdetrv2_tiny" in text


def test_stage_table_shares_and_the_rest() -> None:
    table = stage_table([("a", 25.0), ("bb", 70.0)], total=100.0).splitlines()
    assert table[1].split() == ["a", "25.0", "25%"]
    assert table[2].split() == ["bb", "70.0", "70%"]
    assert table[3].split() == ["other", "(start-up,", "orchestration)", "5.0", "5%"]
    assert table[4].split() == ["total", "100.0"]
    assert len(stage_table([("a", 99.0)], total=100.0).splitlines()) == 3  # 1 % unaccounted: no row


def test_stage_rows_group_the_flow_s_task_runs() -> None:
    rows = [
        ("synthesise data", 2.0),
        ("start the Prefect API", 8.0),
        ("validate-data-624", 5.0),
        ("version-data-a2d", 1.0),
        ("plan-damo_yolo_t", 0.0),
        ("train-damo_yolo_t", 60.0),
        ("train-rtdetrv2_s", 90.0),
        ("export-damo_yolo_t", 2.0),
        ("evaluate-rtdetrv2_s", 7.0),
        ("profile-rtdetrv2_s-openvino", 3.0),
        ("register-damo_yolo_t", 6.0),
        ("dispatch-t4-af6", 0.0),
        ("promote-rtdetrv2_s", 0.5),
        ("report-134", 0.5),
    ]
    assert stage_rows(rows) == [
        ("data (synthesise, validate, version)", 8.0),
        ("start the Prefect API", 8.0),
        ("train damo_yolo_t", 60.0),
        ("train rtdetrv2_s", 90.0),
        ("deploy (export, evaluate, profile)", 12.0),
        ("registry (register, promote, report)", 7.0),
    ]


def test_demo_stops_before_training_when_data_is_invalid(tmp_path, make_dvc_project, monkeypatch):
    project = make_dvc_project(tmp_path / "project")
    import detops.data.synth as synth

    real = synth.synthesize

    def corrupting(out, **options):
        summary = real(out, **options)
        next(Path(out, "val").glob("*.jpg")).unlink()  # an annotated image file goes missing
        return summary

    monkeypatch.setattr(synth, "synthesize", corrupting)
    with pytest.raises(DetopsError, match="failed validation"):
        run_demo(settings=Settings(project_root=project), config=TINY)
    assert not (project / "data.dvc").exists()
    assert not (project / ".detops" / "runs").exists()


@pytest.mark.slow
def test_detops_ui_shows_each_training_with_curves_and_its_version(demo, chromium) -> None:
    """`detops ui` on the demo's own store, in headless Chromium: the registered version links to its
    training run, which shows its metrics (the curves' keys) and the dataset it trained on."""
    import os
    import signal
    import subprocess
    import sys

    from mlflow import MlflowClient

    from tests import servers

    settings, result, _ = demo
    port = servers.free_port()
    env = {**os.environ, "DETOPS_PROJECT_ROOT": str(settings.project_root)}
    env.pop("DETOPS_MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "detops.cli", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    shots = Path(__file__).resolve().parents[1] / "artifacts"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        assert proc.stdout is not None
        line = ""
        while "MLflow UI:" not in line and proc.poll() is None:
            line = proc.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        assert line.startswith(f"MLflow UI: {url}"), line
        mlflow = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        for reg in result["registered"]:
            run = mlflow.get_run(reg["run_id"])
            chromium.get(f"{url}/#/models/{reg['model']}/versions/{reg['version']}")
            # the version page names its source run (the training run's name) and its alias
            servers.wait_text(chromium, ["champion", run.info.run_name])
            chromium.save_screenshot(str(shots / f"demo_ui_version_{reg['variant']}.png"))
            chromium.get(f"{url}/#/experiments/{run.info.experiment_id}/runs/{reg['run_id']}")
            text = servers.wait_text(chromium, [run.info.run_name, "val/AP", "final/AP"])
            assert "train/loss" in text
            chromium.save_screenshot(str(shots / f"demo_ui_run_{reg['variant']}.png"))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
