"""Fast checks of the task layer: which failures retry, cache keys, presets (``.fn`` level, no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detops import presets
from detops.errors import DetopsError
from tasks import caching, retry


class ConnectionError_(Exception):
    """Stands in for a third-party class of that name."""


ConnectionError_.__name__ = "ConnectionError"


class RestException(Exception):
    """MLflow's REST error carries an ``error_code``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.error_code = code


def _wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionRefusedError("down"), True),
        (TimeoutError("slow"), True),
        (ConnectionError_("reset"), True),
        (RestException("TEMPORARILY_UNAVAILABLE"), True),
        (RestException("RESOURCE_DOES_NOT_EXIST"), False),
        (ValueError("bad value"), False),
        (DetopsError("data/annotations: field bbox: value -1"), False),
        (_wrapped(ConnectionRefusedError("down"), RuntimeError("push failed")), True),
        # the library already judged it final: bad data is never retried, whatever it wraps
        (_wrapped(ConnectionRefusedError("down"), DetopsError("dvc push: refused")), False),
        (None, False),
    ],
)
def test_is_transient(exc: BaseException | None, expected: bool) -> None:
    assert retry.is_transient(exc) is expected


class _State:
    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc

    def result(self) -> Any:
        if self.exc is not None:
            raise self.exc
        return 1


def test_retry_condition_reads_the_failed_states_exception() -> None:
    assert retry.retry_transient(None, None, _State(TimeoutError("slow"))) is True
    assert retry.retry_transient(None, None, _State(DetopsError("bad data"))) is False
    assert retry.retry_transient(None, None, _State(None)) is False


def test_the_real_tasks_use_the_retry_condition() -> None:
    from tasks.data import validate_data, version_data
    from tasks.registry import promote, register

    for t in (version_data, register, promote):
        assert t.retries >= 1 and t.retry_condition_fn is retry.retry_transient
    assert validate_data.retries == 0  # bad data: never retried


def test_run_key_changes_with_each_input() -> None:
    base = {"dataset_md5": "abc", "config": {"variant": "damo_yolo_t", "epochs": 3}, "code": "c1"}
    key = caching.run_key(**base)  # type: ignore[arg-type]
    assert key == caching.run_key(**base)  # type: ignore[arg-type]
    assert caching.run_key(**{**base, "config": {"epochs": 3, "variant": "damo_yolo_t"}}) == key  # type: ignore[arg-type]
    for change in (
        {"dataset_md5": "abd"},
        {"config": {"variant": "damo_yolo_t", "epochs": 4}},
        {"code": "c2"},
    ):
        assert caching.run_key(**{**base, **change}) != key  # type: ignore[arg-type]


def test_cache_key_fns_key_on_the_training_key() -> None:
    assert caching.train_cache_key(None, {"plan": {"key": "k1"}}) == "train-k1"
    assert caching.train_cache_key(None, {"plan": {"key": "k2"}}) != caching.train_cache_key(
        None, {"plan": {"key": "k1"}}
    )
    run = {"key": "k1", "run_id": "r1"}
    assert caching.register_cache_key(None, {"run": run, "artifact": {}}) == "register-k1-r1"
    assert caching.register_cache_key(None, {"run": {**run, "run_id": "r2"}}) != "register-k1-r1"


def test_a_new_home_at_the_same_path_is_a_new_instance(tmp_path: Path) -> None:
    """After `make clean` the same path holds a new home: its runs must not be cache hits."""
    import shutil

    home = tmp_path / ".detops"
    first = caching.home_instance(home)
    assert caching.home_instance(home) == first  # stable while the home lives
    shutil.rmtree(home)
    assert caching.home_instance(home) != first


def test_code_digest_sees_code_not_other_files(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    first = caching.code_digest(pkg)
    (pkg / "README.md").write_text("docs\n")
    assert caching.code_digest(pkg) == first
    (pkg / "a.py").write_text("x = 2\n")
    assert caching.code_digest(pkg) != first
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "b.py").write_text("")
    assert caching.code_digest(pkg) != first


def test_presets_resolve_per_family() -> None:
    damo = presets.train_config("damo_yolo_t", preset="smoke")
    detr = presets.train_config("rtdetrv2_s", preset="smoke")
    assert damo["epochs"] == presets.PRESETS["smoke"].epochs["damo_yolo"]
    assert detr["epochs"] == presets.PRESETS["smoke"].epochs["rtdetrv2"]
    assert presets.train_config("rtdetrv2_s", preset="smoke", epochs=2)["epochs"] == 2
    assert presets.train_config("rtdetrv2_s", preset="full")["img_size"] is None
    # `full` is each variant's published recipe: own size, epochs and total batch
    full = {
        v: presets.train_config(v, preset="full")
        for v in ("damo_yolo_t", "damo_yolo_l", "rtdetrv2_s", "rtdetrv2_m", "rtdetrv2_l", "rtdetrv2_x")
    }
    assert {v: (c["epochs"], c["batch_size"], c["img_size"]) for v, c in full.items()} == {
        "damo_yolo_t": (300, 256, None),
        "damo_yolo_l": (300, 256, None),
        "rtdetrv2_s": (120, 16, None),
        "rtdetrv2_m": (84, 16, None),
        "rtdetrv2_l": (72, 16, None),
        "rtdetrv2_x": (72, 16, None),
    }
    # sizes by family too; an explicit size applies to every family
    assert (damo["img_size"], detr["img_size"]) == (160, 192)
    assert presets.train_config("damo_yolo_t", preset="smoke", img_size=256)["img_size"] == 256


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"variant": "damo_yolo_t", "preset": "quick"}, "'quick'"),
        ({"variant": "yolo_v99", "preset": "smoke"}, "'yolo_v99'"),
        ({"variant": "damo_yolo_t", "preset": "smoke", "epochs": 0}, "epochs must be at least 1, got 0"),
    ],
)
def test_presets_refuse_bad_parameters(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(DetopsError, match=needle.replace("(", r"\(")):
        presets.train_config(**kwargs)


def test_plan_run_derives_the_run_directory_from_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from detops.settings import get_settings
    from tasks.train import plan_run

    monkeypatch.setenv("DETOPS_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        dataset = {"md5": "d1", "version": "d1", "remote": "s3://b/p", "root": str(tmp_path / "data")}
        a = plan_run.fn("damo_yolo_t", preset="smoke", epochs=1, dataset=dataset)
        b = plan_run.fn("damo_yolo_t", preset="smoke", epochs=2, dataset=dataset)
        c = plan_run.fn("damo_yolo_t", preset="smoke", epochs=1, dataset={**dataset, "md5": "d2"})
        monkeypatch.setenv("DETOPS_HOME", str(tmp_path / "other-clone"))
        get_settings.cache_clear()
        d = plan_run.fn("damo_yolo_t", preset="smoke", epochs=1, dataset=dataset)
        monkeypatch.setenv("DETOPS_HOME", str(tmp_path / "home"))
        get_settings.cache_clear()
        again = plan_run.fn("damo_yolo_t", preset="smoke", epochs=1, dataset=dataset)
        shutil.rmtree(tmp_path / "home")  # make clean
        cleaned = plan_run.fn("damo_yolo_t", preset="smoke", epochs=1, dataset=dataset)
    finally:
        get_settings.cache_clear()
    assert len({a["key"], b["key"], c["key"], d["key"]}) == 4  # another clone never shares a cached run
    assert again["key"] == a["key"] and cleaned["key"] != a["key"]
    assert Path(a["run_dir"]).parent == tmp_path / "home" / "runs"
    assert a["key"][:12] in a["run_dir"] and a["config"]["epochs"] == 1
    # the plan names the data by version and remote; the training step finds it on its machine
    assert a["dataset"] == {"version": "d1", "remote": "s3://b/p", "root": dataset["root"]}


def test_exception_chains_are_walked_once_even_when_they_loop() -> None:
    first, second = ValueError("a"), KeyError("b")
    first.__context__, second.__context__ = second, first  # a cycle: neither is transient
    assert retry.is_transient(first) is False
    # raised from a transient cause with no context of its own: the cause is followed
    outer = RuntimeError("push failed")
    outer.__cause__, outer.__context__ = ConnectionRefusedError("down"), None
    assert retry.is_transient(outer) is True


def test_a_rest_exception_without_an_error_code_is_not_transient() -> None:
    class RestException(Exception):  # MLflow's name, no error_code attribute
        pass

    assert retry.is_transient(RestException("?")) is False


def test_run_key_takes_paths_in_the_config(tmp_path: Path) -> None:
    # a resolved config may hold paths: they are keyed by their text
    key = caching.run_key(dataset_md5="d", config={"data": tmp_path}, code="c")
    assert key == caching.run_key(dataset_md5="d", config={"data": str(tmp_path)}, code="c")


@pytest.mark.parametrize("exists", [True, False])
def test_home_instance_is_created_once_in_a_new_or_existing_home(tmp_path: Path, exists: bool) -> None:
    home = tmp_path / "not-yet" / "home"
    if exists:
        home.mkdir(parents=True)
    first = caching.home_instance(home)
    assert len(first) == 32 and int(first, 16) >= 0
    assert caching.home_instance(home) == first
