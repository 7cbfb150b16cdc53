"""The fan-out of ``retrain`` onto the ``gpu`` pool: one ``train-gpu`` run per variant, all started
before any is awaited, results in variant order, a failed run named with its state (recording doubles
of Prefect's ``run_deployment`` and of the API client; the flows themselves run in the e2e test)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.states import Completed, Failed, Running

from detops.errors import DetopsError
from tasks.train import TRAIN_DEPLOYMENT, train_on_pool

DATASET = {"version": "a" * 32, "remote": "s3://bucket/dvc", "root": "/pusher/data"}


class FakeApi:
    """``run_deployment`` and ``get_client(sync_client=True)`` in one: records every call, and hands
    out for each started run the states listed for its variant, one per read."""

    def __init__(self, states: dict[str, list[Any]]) -> None:
        self.states = states
        self.calls: list[tuple[str, Any]] = []
        self.runs: dict[uuid.UUID, str] = {}

    def run_deployment(self, **kwargs: Any) -> Any:
        run_id = uuid.uuid4()
        self.runs[run_id] = kwargs["parameters"]["variant"]
        self.calls.append(("start", kwargs))
        return SimpleNamespace(id=run_id)

    def get_client(self, sync_client: bool = False) -> Any:
        assert sync_client
        return self

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def read_flow_run(self, run_id: uuid.UUID) -> Any:
        variant = self.runs[run_id]
        self.calls.append(("read", variant))
        queue = self.states[variant]
        return SimpleNamespace(state=queue.pop(0) if len(queue) > 1 else queue[0])


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(states: dict[str, list[Any]]) -> FakeApi:
        fake = FakeApi(states)
        monkeypatch.setattr("prefect.deployments.run_deployment", fake.run_deployment)
        monkeypatch.setattr("prefect.client.orchestration.get_client", fake.get_client)
        return fake

    return install


def _run(variants: list[str], gpus: int = 2) -> list[dict[str, Any]]:
    return train_on_pool.fn(
        variants, dataset=DATASET, preset="full", epochs=None, img_size=None, pool="gpu", gpus=gpus, poll_s=0
    )


def test_every_variant_starts_before_any_is_awaited(api: Any) -> None:
    fake = api(
        {
            "damo_yolo_t": [Running(), Completed(data={"variant": "damo_yolo_t", "run_id": "r1"})],
            "rtdetrv2_s": [Completed(data={"variant": "rtdetrv2_s", "run_id": "r2"})],
        }
    )
    summaries = _run(["damo_yolo_t", "rtdetrv2_s"])
    assert [s["run_id"] for s in summaries] == ["r1", "r2"]
    # (that no path of the training's worker travels on is the train task's part: test_resume.py)
    assert all(s["trained_on"] == "gpu" for s in summaries)
    kinds = [kind for kind, _ in fake.calls]
    assert kinds[:2] == ["start", "start"] and "start" not in kinds[2:]
    for _, kwargs in fake.calls[:2]:
        assert kwargs["name"] == TRAIN_DEPLOYMENT and kwargs["timeout"] == 0
        assert kwargs["job_variables"] == {"gpus": 2}
        # by version and remote: the GPU worker pulls the data itself
        assert kwargs["parameters"]["dataset"] == DATASET and kwargs["parameters"]["gpus"] == 2
    assert [p for _, p in fake.calls if isinstance(p, str)] == ["damo_yolo_t", "damo_yolo_t", "rtdetrv2_s"]


def test_a_failed_training_run_is_named_with_its_state(api: Any) -> None:
    api(
        {
            "damo_yolo_t": [Completed(data={"variant": "damo_yolo_t"})],
            "rtdetrv2_s": [
                Failed(message="training under torchrun failed (exit code 1): error: rank 1 died")
            ],
        }
    )
    with pytest.raises(DetopsError) as caught:
        _run(["damo_yolo_t", "rtdetrv2_s"])
    text = str(caught.value)
    assert text.startswith("train-rtdetrv2_s: flow run ") and "on pool 'gpu' ended Failed" in text
    assert text.endswith("error: rank 1 died")
