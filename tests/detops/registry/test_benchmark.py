"""``benchmark_version`` (what the t4 pool's ``benchmark`` flow runs), against the session's MLflow
server and, for TensorRT, the recording double of the TensorRT 10 API on a pretended T4 (its engines
run the ONNX graph with ONNX Runtime, so an FP32-exact engine).

The known answer: the registered version's validation split is labelled with the model's own
detections clipped to the image (``_self_labelled``), and the model's mAP on it is scored by the test
with pycocotools directly: an artifact that reproduces the model scores that on that split, and about
0 on any other split or dataset (random weights score 0 on the synthetic labels)."""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from detops.errors import DetopsError
from detops.registry import tags as T
from detops.registry.client import RegistryClient
from detops.settings import Settings
from tests.detops.deploy.conftest import make_checkpoint

VARIANT = "rtdetrv2_tiny"  # its random-weight boxes lie inside the image: valid labels

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:dvc.*")


def _self_labelled(data: Path, onnx: Path) -> float:
    """Label the val split of ``data`` with the ONNX model's own detections; return the model's mAP
    50:95 on it, scored here with pycocotools directly (a reference that shares nothing with detops'
    evaluation code). Random weights score 0 on the synthetic labels; on these they score well
    above 0, and an artifact scored on another split or dataset does not."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from detops.data.dataset import CocoDetection
    from detops.deploy.runners.base import load_runner

    ann_file = data / "annotations" / "instances_val.json"
    coco = json.loads(ann_file.read_text())
    dataset = CocoDetection.from_root(data, split="val", transform=None)
    runner = load_runner(onnx, backend="ort")
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i in range(len(dataset)):
        sample = dataset[i]
        (det,) = runner([sample["image"]])
        for (x0, y0, x1, y1), cat, score in zip(
            det.boxes.tolist(), det.category_ids.tolist(), det.scores.tolist(), strict=True
        ):
            box = {
                "image_id": sample["image_id"],
                "category_id": int(cat),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
            }
            results.append({**box, "score": score})
            annotations.append(
                {**box, "id": len(annotations) + 1, "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
            )
    assert len(annotations) > 10  # RT-DETR keeps its top-scoring queries, whatever their score
    coco["annotations"] = annotations
    ann_file.write_text(json.dumps(coco))
    gt = COCO(str(ann_file))
    scored = COCOeval(gt, gt.loadRes(results), "bbox")
    scored.evaluate()
    scored.accumulate()
    scored.summarize()
    expected = float(scored.stats[0])
    assert 0.05 < expected <= 1.0
    return expected


def _profile(ms: float) -> dict[str, Any]:
    return {
        "model": {"median_ms": ms},
        "end_to_end": {"median_ms": ms + 1.0},
        "environment": {"cpu_model": "Registration CPU"},
        "batch": 1,
        "input_size": 64,
        "precision": "fp32",
        "device": "cpu",
    }


def _run_on(data: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """(run directory, its deployed results): a tiny model of ``VARIANT`` with seeded weights
    "trained" on ``data``, its ONNX export, ``data``'s val split self-labelled by it, and the figures
    a registration would have measured (the mAP ``_self_labelled`` scored, for the artifact and the
    checkpoint alike; 5.25 ms on ONNX Runtime)."""
    from detops.deploy.exporting import export_artifact

    run = tmp_path / "run"
    make_checkpoint(run / "best.pt", VARIANT, data_root=data)
    onnx = tmp_path / "export" / "model.onnx"
    export_artifact(run / "best.pt", out=onnx)
    expected = _self_labelled(data, onnx)
    (run / "config.json").write_text(json.dumps({"variant": VARIANT, "data": str(data), "val_split": "val"}))
    return run, {
        "onnx": str(onnx),
        "evaluations": {"ort": {"AP": expected, "reference": {"AP": expected}, "split": "val"}},
        "profiles": {"ort": _profile(5.25)},
        "max_rel_error": 1e-6,
    }


@pytest.fixture
def registered(
    synth_root: Path, mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Version 1 of a model of this test's own: ``_run_on`` the dataset ``<project>/data``, pushed to a
    local DVC remote as a version, registered with its deployed figures."""
    from detops.data.versioning import version_dataset
    from detops.registry.register import register_run
    from tests.conftest import make_dvc_project_at

    project = make_dvc_project_at(tmp_path / "project")
    data = project / "data"
    shutil.copytree(synth_root, data)
    run, deployed = _run_on(data, tmp_path)
    remote = tmp_path / "remote"
    settings = Settings(
        project_root=project,
        home=tmp_path / "home",
        mlflow_tracking_uri=mlflow_server.url,
        dvc_local_remote=remote,
    )
    version = version_dataset(data, settings=settings, push=True, validate=False).md5
    name = f"detops-{VARIANT}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr("detops.registry.client.model_name", lambda variant: name)
    monkeypatch.setattr("detops.registry.promote.model_name", lambda variant: name)  # imported there
    reg = register_run(run, settings=settings, deployed=deployed, data_valid=True)
    assert reg.tags[T.DATASET_VERSION] == version and reg.tags["detops.dataset_tracked_by"] == "dvc"
    return {
        "name": name,
        "version": reg.version,
        "run_id": reg.run_id,
        "data": data,
        "remote": remote,
        "map": deployed["evaluations"]["ort"]["AP"],
    }


def _worker(tmp_path: Path, mlflow_url: str, remote: Path) -> Settings:
    """Another machine: its own checkout and home, the same MLflow server and DVC remote."""
    (tmp_path / "worker").mkdir()
    return Settings(
        project_root=tmp_path / "worker",
        home=tmp_path / "worker-home",
        mlflow_tracking_uri=mlflow_url,
        dvc_local_remote=remote,
    )


@pytest.fixture
def t4(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The TensorRT 10 double installed as ``tensorrt`` on a pretended Tesla T4: engine I/O in host
    memory and the profile's clock the host's (no CUDA here)."""
    import detops.deploy.profile
    from detops.deploy.runners import base
    from detops.deploy.runners.tensorrt import TensorRTRunner
    from detops.deploy.tensorrt.stamp import DeviceInfo
    from tests.detops.deploy.tensorrt.fake_tensorrt import build_fake

    fake = build_fake()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    gpu = DeviceInfo("Tesla T4", (7, 5))
    monkeypatch.setattr("detops.deploy.tensorrt.build.cuda_device", lambda: gpu)
    monkeypatch.setattr("detops.deploy.runners.tensorrt.cuda_device", lambda: gpu)
    monkeypatch.setitem(
        base.RUNNERS, "tensorrt", lambda path, **options: TensorRTRunner(path, memory_device="cpu", **options)
    )
    monkeypatch.setattr(detops.deploy.profile, "cuda_event_clock", lambda: time.perf_counter)
    return fake


def test_a_version_benchmarked_on_another_worker_gets_its_engine_map_and_can_be_promoted_on_tensorrt(
    registered: dict[str, Any], t4: ModuleType, mlflow_server: Any, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from detops.registry.benchmark import benchmark_rows, benchmark_version
    from detops.registry.policy import Policy
    from detops.registry.promote import promote

    client = RegistryClient(tracking_uri=mlflow_server.url)
    name, version = registered["name"], registered["version"]
    trt_policy = Policy(backend="tensorrt", latency_budget_ms=60_000.0, max_accuracy_drop=0.01)
    # Before the benchmark the version has no TensorRT figures: a policy on tensorrt cannot pass.
    refused = promote(VARIANT, policy=trt_policy, version=version, client=client)
    assert not refused.passed
    assert "candidate artifact mAP not measured" in next(g.detail for g in refused.gates if g.name == "map")

    before = client.get_version(name, version).tags  # with the rejection's gate tags
    shutil.rmtree(registered["data"])  # the worker has none of the registering machine's files
    settings = _worker(tmp_path, mlflow_server.url, registered["remote"])
    result = benchmark_version(
        VARIANT, version, backends=("ort", "tensorrt"), seconds=0.05, settings=settings, client=client
    )

    assert result.unavailable == {} and result.map_unavailable == {}
    assert set(result.latency_ms) == {"ort", "tensorrt"} and all(ms > 0 for ms in result.latency_ms.values())
    # scored on the pulled, self-labelled val split (an FP32-exact engine: the model's own mAP there)
    assert result.map == {"tensorrt": pytest.approx(registered["map"], abs=1e-3)}
    assert result.map_checkpoint == registered["map"]
    # the engine was built from the version's ONNX file, at FP16, on the (pretended) T4
    builds = [d for n, d in t4.calls if n == "Builder.build_serialized_network"]
    assert len(builds) == 1
    assert "FP16" in {d["flag"] for n, d in t4.calls if n == "IBuilderConfig.set_flag"}
    assert (settings.home / "datasets" / before[T.DATASET_VERSION]).is_dir()  # pulled by version

    after = client.get_version(name, version).tags
    written = {k: v for k, v in after.items() if before.get(k) != v}
    assert set(written) == {
        "detops.map.tensorrt",
        "detops.latency_ms.tensorrt",
        "detops.latency_env.tensorrt",
    }
    assert written == result.tags
    assert float(written["detops.map.tensorrt"]) == result.map["tensorrt"]
    assert float(written["detops.latency_ms.tensorrt"]) == result.latency_ms["tensorrt"]
    assert json.loads(written["detops.latency_env.tensorrt"])["device"] == "cuda"
    assert after["detops.latency_ms.ort"] == "5.25"  # CPU figures stay the registration's

    # the engine's evaluation and profile went into the version's MLflow run
    metrics = MlflowClient(tracking_uri=mlflow_server.url).get_run(registered["run_id"]).data.metrics
    assert [k for k in metrics if k.endswith("/tensorrt/AP")], sorted(metrics)

    rows = benchmark_rows([result.as_dict()])
    assert [r["median_ms"] for r in rows] == [round(result.latency_ms[b], 3) for b in ("ort", "tensorrt")]
    assert [(r["backend"], r["status"], r["map"], r["map_checkpoint"]) for r in rows] == [
        ("ort", "measured", None, None),
        ("tensorrt", "measured", round(result.map["tensorrt"], 4), round(registered["map"], 4)),
    ]

    decision = promote(VARIANT, policy=trt_policy, version=version, client=client)
    assert decision.passed, [(g.name, g.detail) for g in decision.gates]
    assert client.alias_version(name, "champion") == version


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Settings], None]]:
    """``cli_env(settings)``: the CLI's environment names those settings (read afresh)."""
    from detops.settings import get_settings

    def use(settings: Settings) -> None:
        for key in ("project_root", "home", "mlflow_tracking_uri", "dvc_local_remote"):
            monkeypatch.setenv(f"DETOPS_{key.upper()}", str(getattr(settings, key)))
        get_settings.cache_clear()

    yield use
    get_settings.cache_clear()


def test_cli_benchmarks_a_version_and_prints_each_backend(
    registered: dict[str, Any],
    t4: ModuleType,
    mlflow_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cli_env: Callable[[Settings], None],
) -> None:
    from detops.cli import main

    cli_env(_worker(tmp_path, mlflow_server.url, registered["remote"]))
    args = ["benchmark", "--variants", VARIANT, "--version", str(registered["version"]), "--seconds", "0.05"]
    assert main([*args, "--backends", "ort,tensorrt"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("dataset version ") and " pulled from " in out[0]  # the worker pulls it
    header = f"{registered['name']} version {registered['version']}"  # the summary after the progress
    lines = out[out.index(header) :]
    assert lines[1].split()[0] == "ort" and lines[1].endswith(" ms")
    tags = (
        RegistryClient(tracking_uri=mlflow_server.url)
        .get_version(registered["name"], registered["version"])
        .tags
    )
    assert lines[2].split()[0] == "tensorrt"
    ap, ckpt = float(tags["detops.map.tensorrt"]), registered["map"]
    assert lines[2].endswith(f" ms  mAP {ap:.4f} (checkpoint {ckpt:.4f})"), lines[2]
    assert lines[3] == "tagged: detops.latency_env.tensorrt, detops.latency_ms.tensorrt, detops.map.tensorrt"
    # without TensorRT here: the row says why, nothing is tagged
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main([*args, "--backends", "tensorrt"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = out[out.index(header) :]
    assert len(lines) == 2 and lines[1].split(maxsplit=1)[0] == "tensorrt"
    assert lines[1].split(maxsplit=1)[1].startswith("unavailable: TensorRT is not installed")


def test_without_tensorrt_the_engine_is_unavailable_and_nothing_is_tagged(
    registered: dict[str, Any], mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detops.registry.benchmark import benchmark_notes, benchmark_rows, benchmark_version

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails, as on this machine
    client = RegistryClient(tracking_uri=mlflow_server.url)
    name, version = registered["name"], registered["version"]
    before = client.get_version(name, version).tags
    settings = _worker(tmp_path, mlflow_server.url, registered["remote"])
    result = benchmark_version(
        VARIANT, version, backends=("ort", "tensorrt"), seconds=0.05, settings=settings, client=client
    )
    assert set(result.latency_ms) == {"ort"} and result.map == {} and result.tags == {}
    assert set(result.unavailable) == {"tensorrt"} and "TensorRT" in result.unavailable["tensorrt"]
    assert client.get_version(name, version).tags == before
    rows = benchmark_rows([result.as_dict()])
    assert rows[1] == {
        "variant": VARIANT,
        "version": version,
        "backend": "tensorrt",
        "median_ms": None,
        "map": None,
        "map_checkpoint": None,
        "status": f"unavailable: {result.unavailable['tensorrt']}",
    }
    assert benchmark_notes([result.as_dict()] * 2) == (
        f"# Benchmark\n\n- tensorrt: unavailable ({result.unavailable['tensorrt']})"
    )


def test_a_dataset_on_no_remote_needs_data_and_wrong_data_is_refused_before_anything_runs(
    synth_root: Path, t4: ModuleType, mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version registered on a directory outside any DVC project (identified by content, as COCO
    val2017 under `detops reproduce`): without --data its engine's latency is measured but not its
    mAP; with the same directory both are; with another directory nothing runs."""
    from detops.registry.benchmark import benchmark_version
    from detops.registry.register import register_run

    data = tmp_path / "coco-like"
    shutil.copytree(synth_root, data)
    run, deployed = _run_on(data, tmp_path)
    expected = deployed["evaluations"]["ort"]["AP"]
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=mlflow_server.url)
    name = f"detops-{VARIANT}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr("detops.registry.client.model_name", lambda variant: name)
    monkeypatch.setattr("detops.registry.promote.model_name", lambda variant: name)  # imported there
    reg = register_run(run, settings=settings, deployed=deployed, data_valid=True)
    client = RegistryClient(tracking_uri=mlflow_server.url)
    digest = reg.tags[T.DATASET_VERSION]
    assert reg.tags["detops.dataset_tracked_by"] == "content"

    other = tmp_path / "other"
    shutil.copytree(synth_root, other)  # the original labels: another dataset
    with pytest.raises(DetopsError) as err:
        benchmark_version(
            VARIANT, reg.version, backends=("tensorrt",), data=other, settings=settings, client=client
        )
    assert str(err.value).startswith(f"--data {other}: dataset version ")
    assert str(err.value).endswith(f"but {name} version {reg.version} was evaluated on {digest}")
    assert t4.calls == [] and client.get_version(name, reg.version).tags == reg.tags

    blind = benchmark_version(
        VARIANT, reg.version, backends=("tensorrt",), seconds=0.05, settings=settings, client=client
    )
    assert blind.map == {} and set(blind.latency_ms) == {"tensorrt"}
    assert blind.map_unavailable == {
        "tensorrt": f"{name} version {reg.version}: dataset {digest} is not DVC-versioned (identified by "
        "content); give --data, a directory holding it on this machine"
    }
    assert set(blind.tags) == {"detops.latency_ms.tensorrt", "detops.latency_env.tensorrt"}

    seen = benchmark_version(
        VARIANT,
        reg.version,
        backends=("tensorrt",),
        seconds=0.05,
        data=data,
        settings=settings,
        client=client,
    )
    assert seen.map == {"tensorrt": pytest.approx(expected, abs=1e-3)} and seen.map_unavailable == {}
    assert float(client.get_version(name, reg.version).tags["detops.map.tensorrt"]) == seen.map["tensorrt"]


def test_version_data_root_refusals(tmp_path: Path) -> None:
    from detops.registry.benchmark import version_data_root

    settings = Settings(project_root=tmp_path, home=tmp_path / "home")
    with pytest.raises(
        DetopsError, match=r"^m version 2: no detops.dataset_version tag, so its dataset is unknown$"
    ):
        version_data_root({}, what="m version 2", settings=settings)
    tags = {T.DATASET_VERSION: "a" * 32, "detops.dataset_tracked_by": "dvc"}
    with pytest.raises(DetopsError, match=f"^--data {tmp_path / 'gone'}: dataset directory not found$"):
        version_data_root(tags, what="m version 2", data=tmp_path / "gone", settings=settings)
    # a DVC version that is on no remote: the pull's own one-line error, naming the version
    with pytest.raises(DetopsError, match="a" * 32):
        version_data_root(tags, what="m version 2", settings=settings)


def test_benchmark_refuses_bad_arguments_before_touching_the_registry(tmp_path: Path) -> None:
    from detops.registry.benchmark import benchmark_version

    class NoRegistry:
        def get_version(self, name: str, version: int) -> Any:
            raise AssertionError("the registry was asked")

    settings = Settings(project_root=tmp_path, home=tmp_path / "home")
    with pytest.raises(DetopsError, match="unknown backend 'cuda'"):
        benchmark_version(VARIANT, 1, backends=("cuda",), settings=settings, client=NoRegistry())
    with pytest.raises(DetopsError, match="^--seconds must be > 0, got 0.0$"):
        benchmark_version(VARIANT, 1, seconds=0.0, settings=settings, client=NoRegistry())
