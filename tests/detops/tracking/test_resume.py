"""A training's state in the MLflow artifact store: uploaded after every epoch, restored by a retry
that has none of the first attempt's disk (the ``train`` task of the ``train`` deployment)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detops.settings import Settings, get_settings
from detops.tracking.resume import RUN_KEY_TAG, restore_training_state, upload_training_state
from detops.tracking.runs import ensure_experiment, run_id_for


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state_dir(path: Path, *, epoch: int, best: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(f'{{"epoch": {e}}}\n' for e in range(1, epoch + 1)))
    (path / "last.pt").write_bytes(f"last of epoch {epoch}".encode())
    if best:
        (path / "best.pt").write_bytes(f"best up to epoch {epoch}".encode())
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded store for the module (creating one costs seconds)."""
    return tmp_path_factory.mktemp("resume") / "home"


def test_restore_picks_the_newest_unfinished_run_of_the_key(home: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    settings = Settings(home=home, track=True)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    assert (
        restore_training_state("k1", variant="damo_yolo_tiny", run_dir=tmp_path / "r0", settings=settings)
        is None
    )
    experiment = ensure_experiment("detops-damo_yolo_tiny", settings=settings)

    def run(key: str, *, epoch: int | None, status: str | None, best: bool = True) -> str:
        run_id = str(client.create_run(experiment, tags={RUN_KEY_TAG: key}).info.run_id)
        if epoch is not None:
            upload_training_state(
                client, run_id, _state_dir(tmp_path / run_id, epoch=epoch, best=best), best_changed=best
            )
        if status is not None:
            client.set_terminated(run_id, status=status)
        return run_id

    run("k1", epoch=5, status="FINISHED")  # done: a cached result, never resumed
    run("k2", epoch=3, status="FAILED")  # another planned training
    older = run("k1", epoch=1, status="FAILED")
    newest = run("k1", epoch=2, status=None, best=False)  # killed: left RUNNING
    run("k1", epoch=None, status="FAILED")  # died before its first epoch: nothing to resume

    target = tmp_path / "scratch"
    assert restore_training_state("k1", variant="damo_yolo_tiny", run_dir=target, settings=settings) == newest
    assert run_id_for(target) == newest
    assert (target / "last.pt").read_bytes() == b"last of epoch 2"
    assert not (target / "best.pt").exists()  # never uploaded by that run
    assert (target / "metrics.jsonl").read_text().count("\n") == 2
    assert not [p for p in target.iterdir() if p.name.startswith("tmp")]  # no download left over

    client.set_terminated(newest, status="FINISHED")
    again = tmp_path / "scratch-2"
    assert restore_training_state("k1", variant="damo_yolo_tiny", run_dir=again, settings=settings) == older
    assert (again / "best.pt").read_bytes() == b"best up to epoch 1"
    assert (
        restore_training_state("k3", variant="damo_yolo_tiny", run_dir=tmp_path / "r3", settings=settings)
        is None
    )


@pytest.fixture
def tracked_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DETOPS_HOME", str(home))
    monkeypatch.setenv("DETOPS_TRACK", "true")
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def test_a_pool_training_killed_after_an_epoch_resumes_from_the_store_on_a_bare_disk(
    tracked_home: Path, synth_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``train`` task of a ``train`` flow run (plan without run directory): the first attempt
    dies after its first epoch; the retry, whose disk holds nothing of it, continues the same MLflow
    run from the uploaded state and ends with the whole history."""
    from mlflow import MlflowClient

    from detops.engine.callbacks import TimeLimit
    from tasks.train import plan_run, train

    dataset = {"md5": "a" * 32, "version": "a" * 32, "remote": None, "root": str(synth_root)}
    plan = plan_run.fn("damo_yolo_tiny", preset="smoke", epochs=2, dataset=dataset, on_pool=True)
    assert plan["run_dir"] is None
    uploaded: dict[str, Any] = {}

    def crash_after_first_epoch(self: Any, *, epoch: int, metrics: dict[str, float]) -> None:
        # runs after the MlflowCallback's own on_epoch_end (the tracking callbacks come first)
        uploaded["last"] = _sha(next((tracked_home / "scratch").glob("*/last.pt")))
        raise RuntimeError("node lost")

    monkeypatch.setattr(TimeLimit, "on_epoch_end", crash_after_first_epoch, raising=False)
    with pytest.raises(RuntimeError, match="node lost"):
        train.fn(plan)
    assert not list((tracked_home / "scratch").iterdir()), "the scratch directory outlived the attempt"
    monkeypatch.undo()  # the environment too: restore it for the retry
    monkeypatch.setenv("DETOPS_HOME", str(tracked_home))
    monkeypatch.setenv("DETOPS_TRACK", "true")
    get_settings.cache_clear()

    client = MlflowClient(tracking_uri=get_settings().mlflow_tracking_uri)
    (first,) = client.search_runs(
        [client.get_experiment_by_name("detops-damo_yolo_tiny").experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{plan['key']}'",
    )
    assert first.info.status == "FAILED"
    (look := tracked_home.parent / "look").mkdir(exist_ok=True)
    stored = client.download_artifacts(first.info.run_id, "checkpoints/last.pt", str(look))
    assert _sha(Path(stored)) == uploaded["last"]
    shutil.rmtree(look)

    summary = train.fn(plan)
    assert summary["resumed"] is True and summary["run_id"] == first.info.run_id
    assert summary["run_dir"] is None and summary["checkpoints"] is None
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert not list((tracked_home / "scratch").iterdir())
    run = client.get_run(first.info.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    assert {f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")} >= {
        "checkpoints/best.pt",
        "checkpoints/last.pt",
    }
