"""Stage results (export / evaluate / profile) logged into the training run they came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detops.errors import DetopsError
from detops.settings import Settings
from detops.tracking.runs import ensure_experiment, write_run_id
from detops.tracking.stages import flatten_numbers, log_stage, source_run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose embedded SQLite store is shared by this module (creating one costs seconds)."""
    return tmp_path_factory.mktemp("store")


def test_flatten_numbers_keeps_numeric_leaves() -> None:
    got = flatten_numbers(
        {"model": {"median_ms": 2, "p90_ms": 2.5, "ok": True, "name": "x"}, "n": 3, "tag": None},
        prefix="profile/a",
    )
    assert got == {"profile/a/model/median_ms": 2.0, "profile/a/model/p90_ms": 2.5, "profile/a/n": 3.0}


def test_source_run_id_from_run_dir_or_a_file_inside(tmp_path: Path) -> None:
    rid = "ab" * 16
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "best.onnx").write_bytes(b"x")
    assert source_run_id(run_dir) is None
    write_run_id(run_dir, rid)
    assert source_run_id(run_dir) == rid and source_run_id(run_dir / "best.onnx") == rid
    assert source_run_id(tmp_path / "missing.onnx") is None


def test_log_stage_into_the_run_of_the_source(store: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    settings = Settings(project_root=store, track=True)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    run_id = client.create_run(ensure_experiment("stages", settings=settings)).info.run_id
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    onnx = run_dir / "best.onnx"
    onnx.write_bytes(b"x")
    result = {"backend": "ort", "model": {"median_ms": 3.5}}
    common = {
        "stage": "profile",
        "name": "best/ort",
        "metrics": flatten_numbers(result, prefix="profile/best/ort"),
        "result": result,
    }

    assert log_stage(onnx, run_id=None, settings=settings, **common) is None  # untracked run dir
    write_run_id(run_dir, run_id)
    off = Settings(project_root=store, track=False)
    assert log_stage(onnx, run_id=None, settings=off, **common) is None  # tracking off: implicit skipped
    assert log_stage(onnx, run_id=None, settings=settings, tags={"profile.env": "cpu"}, **common) == run_id
    run = client.get_run(run_id)
    assert run.data.metrics == {"profile/best/ort/model/median_ms": 3.5}
    assert run.data.tags["profile.env"] == "cpu"
    local = Path(client.download_artifacts(run_id, "profile/best-ort.json", str(tmp_path / "dl")))
    assert json.loads(local.read_text()) == result

    with pytest.raises(DetopsError, match="neither a run directory nor"):
        log_stage(onnx, run_id="nope", settings=off, **common)
    # Explicit run id works with tracking off, and into another run than the source's.
    other = client.create_run(ensure_experiment("stages", settings=settings)).info.run_id
    assert log_stage(onnx, run_id=other, settings=off, **common) == other
    assert client.get_run(other).data.metrics == {"profile/best/ort/model/median_ms": 3.5}


def test_export_profile_evaluate_log_into_the_run(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export --run-id` (a variant name has no run directory), then `profile` of the ONNX file inside
    the tracked run directory logs there without being told; evaluation results take the same path."""
    from mlflow import MlflowClient

    from detops.cli import main
    from detops.cli.tracking import log_evaluation
    from detops.settings import get_settings

    settings = Settings(project_root=store, track=True)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    run_id = client.create_run(ensure_experiment("stages-cli", settings=settings)).info.run_id
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_run_id(run_dir, run_id)
    onnx = run_dir / "tiny.onnx"
    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(store))
    monkeypatch.setenv("DETOPS_TRACK", "true")
    get_settings.cache_clear()
    try:
        assert (
            main(
                ["export", "damo_yolo_tiny", "--out", str(onnx), "--img-size", "64", "--run-id", str(run_dir)]
            )
            == 0
        )
        assert (
            main(["profile", str(onnx), "--backend", "ort", "--warmup", "0", "--iters", "2", "--json"]) == 0
        )
        out = capsys.readouterr()
        json.loads(out.out.strip().splitlines()[-1])  # --json output stays parseable
        assert out.err.count(f"logged to MLflow run {run_id}") == 2
        # The evaluation hook of `detops evaluate ARTIFACT` (the random 80-class graph cannot be
        # evaluated on the 6-class synthetic set, so its stats dict is given here).
        stats = {"AP": 0.25, "AP50": 0.5, "backend": "ort", "per_class": {"a b": 0.125, "c": None}}
        stats["delta"] = {"AP": -0.01}
        log_evaluation(onnx, run_id=None, stats=stats)
    finally:
        get_settings.cache_clear()
    metrics = client.get_run(run_id).data.metrics
    assert "export/tiny/max_rel_error/scores" in metrics or any(
        k.startswith("export/tiny/max_rel_error/") for k in metrics
    )
    assert any(k.startswith("profile/tiny/ort/model/") for k in metrics)
    assert any(k.startswith("profile/tiny/ort/end_to_end/") for k in metrics)
    assert {k: v for k, v in metrics.items() if k.startswith("eval/")} == {
        "eval/tiny/ort/AP": 0.25,
        "eval/tiny/ort/AP50": 0.5,
        "eval/tiny/ort/delta/AP": -0.01,
        "eval/tiny/ort/AP_class/a b": 0.125,
    }
    listed = {f.path for f in client.list_artifacts(run_id, "profile")}
    assert listed == {"profile/tiny-ort.json"}


def test_fresh_training_in_a_used_run_dir_starts_a_new_run_and_resume_continues(
    store: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from detops.tracking import MlflowCallback, run_id_for

    settings = Settings(project_root=store, track=True)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.json").write_text("{}")
    config = {"variant": "damo_yolo_tiny", "data": str(data), "epochs": 1}
    run_dir = tmp_path / "run"
    ids = []
    for resume in (False, False, True):
        with MlflowCallback(settings=settings, system_metrics=False, resume=resume) as cb:
            cb.on_train_start(config=config, run_dir=str(run_dir))
            cb.on_epoch_end(epoch=len(ids) + 1, metrics={"val/AP": 0.1 * (len(ids) + 1)})
        ids.append(cb.run_id)
        assert run_id_for(run_dir) == cb.run_id
    assert ids[0] != ids[1] and ids[2] == ids[1]
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    assert [m.step for m in client.get_metric_history(ids[1], "val/AP")] == [2, 3]
    assert client.get_run(ids[1]).info.status == "FINISHED"
    with pytest.raises(RuntimeError), MlflowCallback(settings=settings, system_metrics=False) as cb:
        cb.on_train_start(config=config, run_dir=str(tmp_path / "failing"))
        raise RuntimeError("training broke")
    assert client.get_run(cb.run_id).info.status == "FAILED"
