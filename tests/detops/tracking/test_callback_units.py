"""``MlflowCallback`` hook by hook, read back from a real MLflow store: every param, tag, metric (key,
value, step), artifact and run status the callback sets, with hand-made metrics and tiny files
instead of a training (``test_stages.py`` and ``test_resume.py`` run real ones)."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from detops.settings import Settings, get_settings
from detops.tracking.callback import MlflowCallback
from detops.tracking.credentials import PASSWORD_VAR, USERNAME_VAR
from tests.conftest import _git

pytestmark = pytest.mark.usefixtures("process_settings_elsewhere")

MD5 = "0123456789abcdef0123456789abcdef"
STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A git project whose ``data`` is DVC-tracked (``data.dvc`` committed); (root, commit)."""
    root = tmp_path_factory.mktemp("project")
    _git(root, "init", "-q")
    (root / "data").mkdir()
    (root / "data" / "a.json").write_text("{}")
    (root / ".gitignore").write_text("/data/\n")
    (root / "data.dvc").write_text(f"outs:\n- md5: {MD5}.dir\n  nfiles: 7\n  path: data\n")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "data")
    return root, _git(root, "rev-parse", "HEAD").strip()


def _settings(project: tuple[Path, str], tmp_path: Path, uri: str, **kw: Any) -> Settings:
    return Settings(project_root=project[0], home=tmp_path / "home", mlflow_tracking_uri=uri, **kw)


def _variant() -> str:
    return f"v{uuid.uuid4().hex[:12]}"  # experiments are per variant: one per test on a shared server


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in _client(uri).get_metric_history(run_id, key)]


def _artifact(uri: str, run_id: str, path: str, dst: Path) -> bytes:
    dst.mkdir(parents=True, exist_ok=True)
    return Path(_client(uri).download_artifacts(run_id, path, str(dst))).read_bytes()


def _all_artifacts(uri: str, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for f in _client(uri).list_artifacts(run_id, path):
        out |= _all_artifacts(uri, run_id, f.path) if f.is_dir else {f.path}
    return out


def test_run_params_provenance_tags_and_dvc_dataset_input(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path
) -> None:
    root, commit = project
    variant = _variant()
    config = {
        "variant": variant,
        "data": str(root / "data"),
        "epochs": 3,
        "lr": 0.01,
        "aug": [1, 2],
        "ema": None,
        "note(x)#": "a b",
    }
    run_dir = tmp_path / "run-7"
    with MlflowCallback(
        settings=_settings(project, tmp_path, tracking_uri),
        system_metrics=False,
        tags={"flow.run": "f-1", "detops.variant": "overridden"},
    ) as cb:
        cb.on_train_start(config=config, run_dir=str(run_dir))
        assert _client(tracking_uri).get_run(cb.run_id).info.status == "RUNNING"
    assert cb.run_id is not None
    assert (run_dir / "mlflow_run_id").read_text() == cb.run_id + "\n"
    run = _client(tracking_uri).get_run(cb.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "run-7"
    assert _client(tracking_uri).get_experiment(run.info.experiment_id).name == f"detops-{variant}"
    assert run.data.params == {
        "variant": variant,
        "data": str(root / "data"),
        "epochs": "3",
        "lr": "0.01",
        "aug": "[1, 2]",
        "ema": "None",
        "note_x__": "a b",
    }
    from importlib.metadata import version

    tags = {k: v for k, v in run.data.tags.items() if k.startswith(("detops.", "flow.", "mlflow.source.git"))}
    assert tags == {
        "detops.variant": "overridden",  # the callback's tags come last
        "detops.run_dir": str(run_dir),
        "detops.git_commit": commit,
        "detops.git_dirty": "false",
        "detops.version": version("detops"),
        "detops.dataset_digest": MD5,
        "detops.dataset_tracked_by": "dvc",
        "detops.dataset_git_revision": commit,
        "mlflow.source.git.commit": commit,
        "flow.run": "f-1",
    }
    (inp,) = run.inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest, inp.dataset.source_type) == ("data", MD5, "local")
    assert json.loads(inp.dataset.source) == {"uri": str((root / "data").resolve())}
    assert {t.key: t.value for t in inp.tags} == {
        "mlflow.data.context": "training",
        "dvc_md5": MD5,
        "git_revision": commit,
        "files": "7",
        "train_split": "train",
        "val_split": "val",
    }


def test_content_tracked_data_named_run_and_experiment_and_configured_splits(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path
) -> None:
    data = tmp_path / "plain"
    data.mkdir()
    (data / "a.json").write_text("{}")
    digest = hashlib.md5(b"a.json\x002\n{}").hexdigest()  # path, size, then the JSON's bytes
    config = {"variant": _variant(), "data": str(data), "train_split": "tr", "val_split": "va"}
    experiment = f"exp-{uuid.uuid4().hex[:8]}"
    with MlflowCallback(
        settings=_settings(project, tmp_path, tracking_uri),
        system_metrics=False,
        experiment=experiment,
        run_name="named",
    ) as cb:
        cb.on_train_start(config=config, run_dir=str(tmp_path / "run"))
    run = _client(tracking_uri).get_run(cb.run_id)
    assert run.info.run_name == "named"
    assert _client(tracking_uri).get_experiment(run.info.experiment_id).name == experiment
    assert run.data.tags["detops.variant"] == config["variant"]
    assert run.data.tags["detops.dataset_digest"] == digest
    assert run.data.tags["detops.dataset_tracked_by"] == "content"
    assert run.data.tags["detops.dataset_git_revision"] == "unknown"
    (inp,) = run.inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest) == ("plain", digest)
    assert {t.key: t.value for t in inp.tags} == {
        "mlflow.data.context": "training",
        "content_md5": digest,
        "git_revision": "unknown",
        "files": "1",
        "train_split": "tr",
        "val_split": "va",
    }


def test_more_than_a_hundred_params_all_arrive(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    config: dict[str, Any] = {"variant": _variant(), "data": str(project[0] / "data")}
    config |= {f"p{i:03d}": i for i in range(248)}  # 250 params: batches of 100, 100, 50
    batches: list[int] = []
    log_batch = MlflowClient.log_batch

    def spy(self: Any, run_id: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("params"):
            batches.append(len(kwargs["params"]))
        return log_batch(self, run_id, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", spy)
    with MlflowCallback(settings=_settings(project, tmp_path, tracking_uri), system_metrics=False) as cb:
        cb.on_train_start(config=config, run_dir=str(tmp_path / "run"))
    assert batches == [100, 100, 50]  # MLflow takes at most 100 params a request; no more requests
    params = _client(tracking_uri).get_run(cb.run_id).data.params
    assert len(params) == 250
    assert params == {"variant": config["variant"], "data": config["data"]} | {
        f"p{i:03d}": str(i) for i in range(248)
    }


def test_resume_continues_the_recorded_run_keeping_its_params_and_name(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path
) -> None:
    settings = _settings(project, tmp_path, tracking_uri)
    config = {"variant": _variant(), "data": str(project[0] / "data"), "epochs": 2}
    run_dir = tmp_path / "run"
    with MlflowCallback(settings=settings, system_metrics=False) as first:
        first.on_train_start(config=config, run_dir=str(run_dir))
        first.on_epoch_end(epoch=1, metrics={"val/AP": 0.125})
    changed = config | {"epochs": 5, "extra": "yes"}
    with MlflowCallback(settings=settings, system_metrics=False, resume=True, run_name="other") as again:
        again.on_train_start(config=changed, run_dir=str(run_dir))
        again.on_epoch_end(epoch=2, metrics={"val/AP": 0.25})
    assert again.run_id == first.run_id
    run = _client(tracking_uri).get_run(first.run_id)
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params == {
        "variant": config["variant"],
        "data": config["data"],
        "epochs": "2",  # params are immutable: the first value stays
        "extra": "yes",
    }
    assert _history(tracking_uri, first.run_id, "val/AP") == [(1, 0.125), (2, 0.25)]
    # Without resume (the default), the same run directory starts a new run and records it.
    with MlflowCallback(settings=settings, system_metrics=False) as fresh:
        fresh.on_train_start(config=config, run_dir=str(run_dir))
    assert fresh.run_id != first.run_id
    assert (run_dir / "mlflow_run_id").read_text() == f"{fresh.run_id}\n"


def test_resume_of_a_run_the_store_does_not_know_starts_a_new_one(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "mlflow_run_id").write_text("ab" * 16 + "\n")  # valid, but of another store
    config = {"variant": _variant(), "data": str(project[0] / "data")}
    settings = _settings(project, tmp_path, tracking_uri)
    with MlflowCallback(settings=settings, system_metrics=False, resume=True) as cb:
        cb.on_train_start(config=config, run_dir=str(run_dir))
    assert cb.run_id is not None and cb.run_id != "ab" * 16
    run = _client(tracking_uri).get_run(cb.run_id)
    assert run.info.run_name == "run"
    assert _client(tracking_uri).get_experiment(run.info.experiment_id).name == f"detops-{config['variant']}"
    assert run.data.params == {"variant": config["variant"], "data": config["data"]}
    assert (run_dir / "mlflow_run_id").read_text() == f"{cb.run_id}\n"
    with MlflowCallback(settings=settings, system_metrics=False, resume=True) as cb2:  # no id file
        cb2.on_train_start(config=config, run_dir=str(tmp_path / "new"))
    assert _client(tracking_uri).get_run(cb2.run_id).info.run_name == "new"


def test_step_and_epoch_metrics_keys_values_steps_and_timestamps(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path
) -> None:
    settings = _settings(project, tmp_path, tracking_uri)
    config = {"variant": _variant(), "data": str(project[0] / "data")}
    runs = {}
    before = int(time.time() * 1000)
    for every in (None, 0, 3):
        kw = {} if every is None else {"step_every": every}
        with MlflowCallback(settings=settings, system_metrics=False, **kw) as cb:
            cb.on_train_start(config=config, run_dir=str(tmp_path / f"run-{every}"))
            for step in range(7):
                cb.on_step_end(step=step, epoch=1, metrics={"loss": step / 8, "lr(x)": 0.5})
            cb.on_epoch_end(
                epoch=4,
                metrics={"train/loss": 0.75, "val/AP": 0.5, "time_s": 3, "ok": True, "note": "x", "n": None},
            )
        runs[every] = cb.run_id
    after = int(time.time() * 1000)
    every_step = [(s, s / 8) for s in range(7)]
    assert _history(tracking_uri, runs[None], "step/loss") == every_step
    assert _history(tracking_uri, runs[0], "step/loss") == every_step
    assert _history(tracking_uri, runs[3], "step/loss") == [(0, 0.0), (3, 3 / 8), (6, 6 / 8)]
    assert _history(tracking_uri, runs[3], "step/lr_x_") == [(0, 0.5), (3, 0.5), (6, 0.5)]
    metrics = _client(tracking_uri).get_run(runs[None]).data.metrics
    assert metrics == {
        "step/loss": 6 / 8,
        "step/lr_x_": 0.5,
        "train/loss": 0.75,
        "val/AP": 0.5,
        "time_s": 3.0,
        "ok": 1.0,
    }
    for key in ("val/AP", "time_s", "step/loss"):
        for m in _client(tracking_uri).get_metric_history(runs[None], key):
            assert before <= m.timestamp <= after  # milliseconds
    assert [m.step for m in _client(tracking_uri).get_metric_history(runs[None], "val/AP")] == [4]


def test_a_thousand_queued_step_metrics_are_sent_at_once_and_the_rest_at_epoch_end(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path
) -> None:
    config = {"variant": _variant(), "data": str(project[0] / "data")}
    with MlflowCallback(settings=_settings(project, tmp_path, tracking_uri), system_metrics=False) as cb:
        cb.on_train_start(config=config, run_dir=str(tmp_path / "run"))
        assert cb.run_id is not None
        for step in range(333):
            cb.on_step_end(step=step, epoch=1, metrics={"a": step, "b": 1.0, "c": 2.0})
        assert _client(tracking_uri).get_metric_history(cb.run_id, "step/a") == []  # 999 queued
        cb.on_step_end(step=333, epoch=1, metrics={"a": 333})  # the 1000th: all sent
        assert _history(tracking_uri, cb.run_id, "step/a") == [(s, float(s)) for s in range(334)]
        assert len(_client(tracking_uri).get_metric_history(cb.run_id, "step/b")) == 333
        for step in range(334, 2000):
            cb.on_step_end(step=step, epoch=1, metrics={"a": step})  # 1666 more: 1000 sent, 666 queued
        assert len(_client(tracking_uri).get_metric_history(cb.run_id, "step/a")) == 1334
        cb.on_epoch_end(epoch=1, metrics={"e": 1.0})
    assert _history(tracking_uri, cb.run_id, "step/a") == [(s, float(s)) for s in range(2000)]
    assert _history(tracking_uri, cb.run_id, "e") == [(1, 1.0)]


def _state(run_dir: Path, epoch: int, *, best: bool) -> None:
    (run_dir / "metrics.jsonl").write_text("".join(f'{{"epoch": {e}}}\n' for e in range(1, epoch + 1)))
    (run_dir / "last.pt").write_bytes(f"last {epoch}".encode())
    if best:
        (run_dir / "best.pt").write_bytes(f"best {epoch}".encode())


def test_upload_last_sends_the_state_of_epochs_that_wrote_last_pt(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path
) -> None:
    config = {"variant": _variant(), "data": str(project[0] / "data")}
    run_dir = tmp_path / "run"
    uri = tracking_uri
    with MlflowCallback(
        settings=_settings(project, tmp_path, uri), system_metrics=False, upload_last=True
    ) as cb:
        cb.on_train_start(config=config, run_dir=str(run_dir))
        assert cb.run_id is not None
        _state(run_dir, 1, best=True)
        cb.on_checkpoint(path=str(run_dir / "best.pt"), kind="best", epoch=1)  # best alone: no upload
        cb.on_epoch_end(epoch=1, metrics={"val/AP": 0.1})
        assert _all_artifacts(uri, cb.run_id) == set()
        _state(run_dir, 2, best=True)
        cb.on_checkpoint(path=str(run_dir / "best.pt"), kind="best", epoch=2)
        cb.on_checkpoint(path=str(run_dir / "last.pt"), kind="last", epoch=2)
        cb.on_epoch_end(epoch=2, metrics={"val/AP": 0.2})
        assert _all_artifacts(uri, cb.run_id) == {
            "metrics.jsonl",
            "checkpoints/best.pt",
            "checkpoints/last.pt",
        }
        assert _artifact(uri, cb.run_id, "checkpoints/best.pt", tmp_path / "d2") == b"best 2"
        assert _artifact(uri, cb.run_id, "checkpoints/last.pt", tmp_path / "d2") == b"last 2"
        _state(run_dir, 3, best=True)  # best.pt changed on disk, but this epoch did not write it
        cb.on_checkpoint(path=str(run_dir / "last.pt"), kind="last", epoch=3)
        cb.on_epoch_end(epoch=3, metrics={"val/AP": 0.1})
        assert _artifact(uri, cb.run_id, "checkpoints/best.pt", tmp_path / "d3") == b"best 2"
        assert _artifact(uri, cb.run_id, "checkpoints/last.pt", tmp_path / "d3") == b"last 3"
        assert _artifact(uri, cb.run_id, "metrics.jsonl", tmp_path / "d3").count(b"\n") == 3
        _state(run_dir, 4, best=True)  # an epoch that wrote no checkpoint uploads nothing
        cb.on_epoch_end(epoch=4, metrics={"val/AP": 0.1})
        assert _artifact(uri, cb.run_id, "checkpoints/last.pt", tmp_path / "d4") == b"last 3"
        assert _artifact(uri, cb.run_id, "metrics.jsonl", tmp_path / "d4").count(b"\n") == 3


def test_without_upload_last_epochs_upload_nothing(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path
) -> None:
    config = {"variant": _variant(), "data": str(project[0] / "data")}
    run_dir = tmp_path / "run"
    with MlflowCallback(settings=_settings(project, tmp_path, tracking_uri), system_metrics=False) as cb:
        cb.on_train_start(config=config, run_dir=str(run_dir))
        _state(run_dir, 1, best=True)
        cb.on_checkpoint(path=str(run_dir / "best.pt"), kind="best", epoch=1)
        cb.on_checkpoint(path=str(run_dir / "last.pt"), kind="last", epoch=1)
        cb.on_epoch_end(epoch=1, metrics={"val/AP": 0.1})
        assert cb.run_id is not None
        assert _all_artifacts(tracking_uri, cb.run_id) == set()


class _Spies:
    """The final evaluation replaced by hand-made statistics; the plot functions recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import detops.tracking.final_eval as final_eval
        from detops.tracking import plots

        self.evaluations: list[tuple[Path, dict[str, Any]]] = []
        self.plots: list[tuple[str, dict[str, Any]]] = []
        self.final: dict[str, Any] = {name: (i + 1) / 100 for i, name in enumerate(STATS)}
        self.final |= {
            "per_class": {"cat": 0.5, "blue triangle": 0.25, "a(b)": 0.125, "never seen": None},
            "pr_recall": [0.0, 0.5, 1.0],
            "pr_precision": [1.0, 0.75, 0.25],
        }

        def fake_final_evaluation(checkpoint: Path, **kw: Any) -> dict[str, Any]:
            self.evaluations.append((checkpoint, kw))
            return dict(self.final)

        monkeypatch.setattr(final_eval, "final_evaluation", fake_final_evaluation)
        for name in ("plot_curves", "plot_pr_curve", "plot_class_ap"):

            def spy(*args: Any, _name: str = name, **kw: Any) -> Path:
                # a real fit draws them (test_tracking_server.py); a stand-in file is faster here
                self.plots.append((_name, {**dict(enumerate(args)), **kw}))
                Path(kw["out"]).write_bytes(b"png")
                return Path(kw["out"])

            monkeypatch.setattr(plots, name, spy)


def _finished_run_dir(run_dir: Path, *, best: bool = True) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    history = [
        {"epoch": 1, "train/loss": 1.0, "train/loss_cls": 0.5, "val/AP": 0.1},
        {"epoch": 2, "train/loss": 0.5, "train/loss_cls": 0.25, "val/AP": 0.2, "val/AP50": 0.4},
    ]
    (run_dir / "config.json").write_text('{"c": 1}\n')
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    (run_dir / "summary.json").write_text('{"s": 1}\n')
    if best:
        (run_dir / "best.pt").write_bytes(b"best weights")
    return {"run_dir": str(run_dir), "history": history, "checkpoints": {"best": str(run_dir / "best.pt")}}


def test_train_end_logs_final_metrics_tags_artifacts_and_finishes(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spies = _Spies(monkeypatch)
    uri = tracking_uri
    data = str(project[0] / "data")
    config = {"variant": _variant(), "data": data}
    run_dir = tmp_path / "run"
    summary = _finished_run_dir(run_dir) | {"best_epoch": 2, "best_map": 0.2}
    (run_dir / "plots").mkdir()  # left by an earlier attempt
    before = int(time.time() * 1000)
    with MlflowCallback(settings=_settings(project, tmp_path, uri), system_metrics=False) as cb:
        cb.on_train_start(config=config, run_dir=str(run_dir))
        cb.on_train_end(summary=summary)
        assert cb.run_id is not None
        assert _client(uri).get_run(cb.run_id).info.status == "FINISHED"  # closed by on_train_end
    after = int(time.time() * 1000)
    assert spies.evaluations == [
        (run_dir / "best.pt", {"data_root": data, "split": "val", "img_size": None, "batch_size": 8})
    ]
    plots = run_dir / "plots"
    assert spies.plots == [
        (
            "plot_curves",
            {
                0: summary["history"],
                "prefix": "train/loss",
                "title": "training loss",
                "out": plots / "loss.png",
            },
        ),
        (
            "plot_curves",
            {0: summary["history"], "prefix": "val/AP", "title": "val mAP", "out": plots / "map.png"},
        ),
        ("plot_pr_curve", {0: [0.0, 0.5, 1.0], 1: [1.0, 0.75, 0.25], "out": plots / "pr_iou50.png"}),
        ("plot_class_ap", {0: spies.final["per_class"], "out": plots / "class_ap.png"}),
    ]
    run = _client(uri).get_run(cb.run_id)
    assert run.data.tags["detops.best_epoch"] == "2" and run.data.tags["detops.best_map"] == "0.2"
    expected = {f"final/{name}": (i + 1) / 100 for i, name in enumerate(STATS)}
    expected |= {
        "final/AP_class/cat": 0.5,
        "final/AP_class/blue triangle": 0.25,
        "final/AP_class/a_b_": 0.125,
    }
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("final/")} == expected
    for key in ("final/AP", "final/AP_class/cat"):
        (m,) = _client(uri).get_metric_history(cb.run_id, key)
        assert m.step == 2 and before <= m.timestamp <= after
    assert _all_artifacts(uri, cb.run_id) == {
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "final_eval.json",
        "checkpoints/best.pt",
        "plots/loss.png",
        "plots/map.png",
        "plots/pr_iou50.png",
        "plots/class_ap.png",
    }
    assert _artifact(uri, cb.run_id, "checkpoints/best.pt", tmp_path / "dl") == b"best weights"
    assert _artifact(uri, cb.run_id, "config.json", tmp_path / "dl") == b'{"c": 1}\n'
    assert json.loads(_artifact(uri, cb.run_id, "final_eval.json", tmp_path / "dl")) == spies.final
    assert json.loads((run_dir / "final_eval.json").read_text()) == spies.final


def test_final_evaluation_takes_split_size_and_batch_from_the_config(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spies = _Spies(monkeypatch)
    settings = _settings(project, tmp_path, tracking_uri)
    data = str(project[0] / "data")
    variant = _variant()
    configs = [
        {"val_split": "va", "img_size": 96, "eval_batch_size": 2},
        {"eval_batch_size": None},
        {"eval_batch_size": 0},
    ]
    for i, extra in enumerate(configs):
        run_dir = tmp_path / f"run{i}"
        with MlflowCallback(settings=settings, system_metrics=False) as cb:
            cb.on_train_start(config={"variant": variant, "data": data, **extra}, run_dir=str(run_dir))
            cb.on_train_end(summary=_finished_run_dir(run_dir))
    assert [kw for _, kw in spies.evaluations] == [
        {"data_root": data, "split": "va", "img_size": 96, "batch_size": 2},
        {"data_root": data, "split": "val", "img_size": None, "batch_size": 8},
        {"data_root": data, "split": "val", "img_size": None, "batch_size": 8},
    ]
    # without best_epoch the final metrics go to step 0
    assert [m.step for m in _client(tracking_uri).get_metric_history(cb.run_id, "final/AP")] == [0]


def test_train_end_without_final_eval_or_without_best_checkpoint(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spies = _Spies(monkeypatch)
    uri = tracking_uri
    settings = _settings(project, tmp_path, uri)
    config = {"variant": _variant(), "data": str(project[0] / "data")}
    with MlflowCallback(settings=settings, system_metrics=False, final_eval=False) as off:
        off.on_train_start(config=config, run_dir=str(tmp_path / "off"))
        off.on_train_end(summary=_finished_run_dir(tmp_path / "off") | {"best_map": "n/a"})
    with MlflowCallback(settings=settings, system_metrics=False) as nobest:
        nobest.on_train_start(config=config, run_dir=str(tmp_path / "nobest"))
        nobest.on_train_end(summary=_finished_run_dir(tmp_path / "nobest", best=False))
    # a summary naming a run directory that is not there (yet) and no history: only the plots
    bare_dir = tmp_path / "gone" / "bare"
    with MlflowCallback(settings=settings, system_metrics=False) as bare:
        bare.on_train_start(config=config, run_dir=str(tmp_path / "bare"))
        bare.on_train_end(
            summary={"run_dir": str(bare_dir), "checkpoints": {"best": str(bare_dir / "best.pt")}}
        )
    assert spies.evaluations == []
    assert [name for name, _ in spies.plots] == ["plot_curves", "plot_curves"] * 3
    assert [kw[0] for _, kw in spies.plots[-2:]] == [[], []]
    assert bare.run_id is not None
    assert _all_artifacts(uri, bare.run_id) == {"plots/loss.png", "plots/map.png"}
    assert off.run_id is not None and nobest.run_id is not None
    plots = {"plots/loss.png", "plots/map.png"}
    assert (
        _all_artifacts(uri, off.run_id)
        == {"config.json", "metrics.jsonl", "summary.json", "checkpoints/best.pt"} | plots
    )
    assert _all_artifacts(uri, nobest.run_id) == {"config.json", "metrics.jsonl", "summary.json"} | plots
    for run_id in (off.run_id, nobest.run_id):
        run = _client(uri).get_run(run_id)
        assert run.info.status == "FINISHED"
        assert not [k for k in run.data.metrics if k.startswith("final/")]
    tags_off = _client(uri).get_run(off.run_id).data.tags
    tags_nobest = _client(uri).get_run(nobest.run_id).data.tags
    assert (tags_off["detops.best_epoch"], tags_off["detops.best_map"]) == ("null", "n/a")
    assert (tags_nobest["detops.best_epoch"], tags_nobest["detops.best_map"]) == ("null", "null")


def test_final_eval_is_on_by_default(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spies = _Spies(monkeypatch)
    with MlflowCallback(settings=_settings(project, tmp_path, tracking_uri), system_metrics=False) as cb:
        cb.on_train_start(
            config={"variant": _variant(), "data": str(project[0] / "data")}, run_dir=str(tmp_path / "r")
        )
        cb.on_train_end(summary=_finished_run_dir(tmp_path / "r"))
    assert len(spies.evaluations) == 1


def test_exit_closes_the_run_finished_or_failed_and_flush_errors(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path
) -> None:
    from mlflow.exceptions import MlflowException

    settings = _settings(project, tmp_path, tracking_uri)
    config = {"variant": _variant(), "data": str(project[0] / "data")}
    too_long = "k" * 300  # MLflow refuses metric names over 250 characters
    with (
        pytest.raises(RuntimeError, match="training broke"),
        MlflowCallback(settings=settings, system_metrics=False) as failed,
    ):
        failed.on_train_start(config=config, run_dir=str(tmp_path / "failed"))
        failed.on_step_end(step=0, epoch=1, metrics={too_long: 1.0, "ok": 2.0})
        raise RuntimeError("training broke")  # the queued metric's error does not hide this one
    assert failed.run_id is not None
    assert _client(tracking_uri).get_run(failed.run_id).info.status == "FAILED"
    import mlflow

    try:
        with (
            pytest.raises(MlflowException, match="exceeds the maximum length of 250"),
            MlflowCallback(settings=settings, system_metrics=False) as bad,
        ):
            bad.on_train_start(config=config, run_dir=str(tmp_path / "bad"))
            bad.on_step_end(step=0, epoch=1, metrics={too_long: 1.0})
    finally:
        mlflow.end_run()  # the run the refused flush left open
    with MlflowCallback(settings=settings, system_metrics=False) as unstarted:
        pass  # a callback never started closes nothing
    assert unstarted.run_id is None and mlflow.active_run() is None
    with MlflowCallback(settings=settings, system_metrics=False) as ended:
        ended.on_train_start(config=config, run_dir=str(tmp_path / "ended"))
        mlflow.end_run()
        other = mlflow.start_run(experiment_id=_client(tracking_uri).get_run(ended.run_id).info.experiment_id)
    try:  # its own run already ended: leaving the block ends no other run
        assert mlflow.active_run() is not None and mlflow.active_run().info.run_id == other.info.run_id
    finally:
        mlflow.end_run()


def test_credentials_are_in_the_environment_only_while_the_run_is_open(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _Spies(monkeypatch)
    monkeypatch.delenv(USERNAME_VAR, raising=False)
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    settings = _settings(
        project, tmp_path, tracking_uri, mlflow_tracking_username="u", mlflow_tracking_password="pw-1"
    )
    config = {"variant": _variant(), "data": str(project[0] / "data")}
    with MlflowCallback(settings=settings, system_metrics=False) as cb:
        assert (os.environ[USERNAME_VAR], os.environ[PASSWORD_VAR]) == ("u", "pw-1")
        cb.on_train_start(config=config, run_dir=str(tmp_path / "a"))
        cb.on_train_end(summary=_finished_run_dir(tmp_path / "a"))
        assert os.environ[PASSWORD_VAR] == "pw-1"  # the block is still open
    assert USERNAME_VAR not in os.environ and PASSWORD_VAR not in os.environ
    # Without a with block: on_train_start sets them, on_train_end takes them away.
    bare = MlflowCallback(settings=settings, system_metrics=False)
    bare.on_train_start(config=config, run_dir=str(tmp_path / "b"))
    assert os.environ[PASSWORD_VAR] == "pw-1"
    bare.on_train_end(summary=_finished_run_dir(tmp_path / "b"))
    assert PASSWORD_VAR not in os.environ
    # A callback used in a with block once, then bare, still cleans up after itself.
    with cb:
        pass
    cb.on_train_start(config=config, run_dir=str(tmp_path / "c"))
    assert os.environ[PASSWORD_VAR] == "pw-1"
    cb.on_train_end(summary=_finished_run_dir(tmp_path / "c"))
    assert PASSWORD_VAR not in os.environ


def test_system_metrics_are_sampled_by_default_and_can_be_turned_off(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path
) -> None:
    from mlflow.tracking.fluent import run_id_to_system_metrics_monitor as monitors

    settings = _settings(project, tmp_path, tracking_uri)
    config = {"variant": _variant(), "data": str(project[0] / "data")}
    with MlflowCallback(settings=settings) as on:
        on.on_train_start(config=config, run_dir=str(tmp_path / "on"))
        assert on.run_id in monitors
    with MlflowCallback(settings=settings, system_metrics=False) as off:
        off.on_train_start(config=config, run_dir=str(tmp_path / "off"))
        assert off.run_id not in monitors


def test_default_settings_are_the_process_settings(
    tracking_uri: str, project: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("DETOPS_PROJECT_ROOT", str(project[0]))
    monkeypatch.setenv("DETOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_URI", tracking_uri)
    get_settings.cache_clear()
    with MlflowCallback(system_metrics=False) as cb:
        cb.on_train_start(
            config={"variant": _variant(), "data": str(project[0] / "data")}, run_dir=str(tmp_path / "r")
        )
    assert cb.run_id is not None
    assert _client(tracking_uri).get_run(cb.run_id).info.status == "FINISHED"
