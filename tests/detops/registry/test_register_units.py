"""``register_run`` without its export, evaluation and profile (the ``deployed`` results a caller
already has): every tag of the version, the run's files, the refusals of a bad run directory or id,
and the small helpers (latency tags, environment summary, the model's input example). The whole path
(export, evaluation, profile, then promotion) is in test_register.py (slow); these run against the
session's real MLflow server and are fast enough for mutation testing (tests/MUTATION.md)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from detops.errors import DetopsError
from detops.registry import tags as T
from detops.registry.client import RegistryClient
from tests.detops.deploy.conftest import make_checkpoint

VARIANT = "damo_yolo_tiny"


class _NoRuns:
    """A registry that knows no MLflow run (only what ``_resolve_run`` asks)."""

    display_uri = "http://registry.example:5000"

    def run_exists(self, run_id: str) -> bool:
        return False


def _profile(model_ms: float, e2e_ms: float, *, cpu: str) -> dict[str, Any]:
    return {
        "model": {"median_ms": model_ms},
        "end_to_end": {"median_ms": e2e_ms},
        "environment": {"cpu": cpu, "threads": 2, "versions": {"onnxruntime": "1.x"}, "flags": ["avx2"]},
        "batch": 1,
        "input_size": 64,
        "precision": "fp32",
        "device": "cpu",
    }


# --- small helpers -------------------------------------------------------------------------------


def test_env_summary_keeps_scalars_and_the_method() -> None:
    from detops.registry.register import env_summary

    got = env_summary(_profile(5.0, 6.0, cpu="Xeon"))
    assert got == {
        "cpu": "Xeon",
        "threads": 2,
        "batch": 1,
        "input_size": 64,
        "precision": "fp32",
        "device": "cpu",
    }
    assert list(got)[:2] == ["cpu", "threads"]  # sorted environment keys first
    assert env_summary({}) == {"batch": None, "input_size": None, "precision": None, "device": None}


def test_latency_tags_per_backend() -> None:
    from detops.registry.register import latency_tags

    tags = latency_tags({"ort": _profile(5.25, 7.0, cpu="Xeon"), "openvino": _profile(4.5, 6.0, cpu="EPYC")})
    assert set(tags) == {
        "detops.latency_ms.ort",
        "detops.latency_env.ort",
        "detops.latency_ms.openvino",
        "detops.latency_env.openvino",
    }
    assert tags["detops.latency_ms.ort"] == "5.25"
    assert tags["detops.latency_ms.openvino"] == "4.5"
    env = json.loads(tags["detops.latency_env.openvino"])
    assert env["cpu"] == "EPYC" and env["batch"] == 1 and env["precision"] == "fp32"
    assert tags["detops.latency_env.ort"] == json.dumps(
        json.loads(tags["detops.latency_env.ort"]), sort_keys=True
    )
    long = latency_tags({"ort": _profile(1.0, 1.0, cpu="x" * 6000)})["detops.latency_env.ort"]
    assert len(long) == 4900  # under MLflow's 5000-character tag limit


def test_summary_field_reads_summary_json_or_gives_empty(tmp_path: Path) -> None:
    from detops.registry.register import _summary_field

    assert _summary_field(tmp_path, "best_epoch") == ""
    (tmp_path / "summary.json").write_text("{not json")
    assert _summary_field(tmp_path, "best_epoch") == ""
    (tmp_path / "summary.json").write_text(json.dumps({"best_epoch": 3}))
    assert _summary_field(tmp_path, "best_epoch") == 3
    assert _summary_field(tmp_path, "other") == ""


def test_read_config_refusals_name_file_and_field(tmp_path: Path) -> None:
    from detops.registry.register import _read_config

    with pytest.raises(DetopsError) as exc:
        _read_config(tmp_path)
    assert str(exc.value) == f"run directory {tmp_path}: no config.json (is it a `detops train` run?)"
    path = tmp_path / "config.json"
    path.write_text('{"variant": "damo_yolo_t",\n "data": }')
    with pytest.raises(DetopsError) as exc:
        _read_config(tmp_path)
    assert str(exc.value) == f"{path}: not valid JSON (Expecting value at line 2)"
    path.write_text(json.dumps({"variant": "damo_yolo_t"}))
    with pytest.raises(DetopsError) as exc:
        _read_config(tmp_path)
    assert str(exc.value) == f"{path}: field 'data' missing or not a string: None"
    path.write_text(json.dumps({"variant": 3, "data": "d"}))
    with pytest.raises(DetopsError) as exc:
        _read_config(tmp_path)
    assert str(exc.value) == f"{path}: field 'variant' missing or not a string: 3"
    path.write_text(json.dumps({"variant": "damo_yolo_t", "data": "d", "epochs": 2}))
    assert _read_config(tmp_path) == {"variant": "damo_yolo_t", "data": "d", "epochs": 2}


def test_resolve_run_refusals(tmp_path: Path) -> None:
    from detops.registry.register import _resolve_run

    with pytest.raises(DetopsError) as exc:
        _resolve_run(tmp_path, client=_NoRuns(), settings=None)
    assert str(exc.value) == f"run directory {tmp_path}: no best.pt"
    with pytest.raises(DetopsError) as exc:
        _resolve_run(" runs/abc ", client=_NoRuns(), settings=None)
    assert (
        str(exc.value)
        == "register: 'runs/abc' is neither a run directory nor an MLflow run id (32 hex digits)"
    )
    with pytest.raises(DetopsError) as exc:
        _resolve_run("A" * 32, client=_NoRuns(), settings=None)  # upper case is not an MLflow run id
    assert "neither a run directory nor an MLflow run id" in str(exc.value)
    run_id = "0123456789abcdef" * 2
    with pytest.raises(DetopsError) as exc:
        _resolve_run(f"{run_id}\n", client=_NoRuns(), settings=None)
    assert str(exc.value) == f"register: no MLflow run {run_id} on http://registry.example:5000"


def test_example_image_is_the_first_image_scaled_to_the_longest_side(synth_root: Path) -> None:
    from detops.data.dataset import decode_image
    from detops.registry.register import _example_image

    first = json.loads((synth_root / "annotations" / "instances_val.json").read_text())["images"][0]
    original = decode_image(synth_root / "val" / first["file_name"])
    h, w = original.shape[:2]

    def decoded(data: bytes) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert bgr is not None, "not an encoded image"
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    data = _example_image(synth_root, "val", max_side=40)
    assert data[:3] == b"\xff\xd8\xff"  # JPEG
    small = decoded(data)
    assert max(small.shape[:2]) == 40
    assert small.shape[:2] == (max(1, round(h * 40 / max(h, w))), max(1, round(w * 40 / max(h, w))))
    reference = cv2.resize(original, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(float) - reference).mean() < 8.0  # JPEG at quality 90, in RGB order
    whole_jpeg = _example_image(synth_root, "val")  # default 160 px: larger than the image
    whole = decoded(whole_jpeg)
    assert whole.shape == original.shape
    assert np.abs(whole.astype(float) - original).mean() < 6.0
    ok, jpeg90 = cv2.imencode(
        ".jpg", cv2.cvtColor(original, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    assert ok and whole_jpeg == jpeg90.tobytes()  # JPEG at quality 90


def test_example_image_of_an_empty_split_is_refused(synth_root: Path, tmp_path: Path) -> None:
    from detops.registry.register import _example_image

    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    ann = data / "annotations" / "instances_val.json"
    coco = json.loads(ann.read_text())
    ann.write_text(json.dumps({**coco, "images": [], "annotations": []}))
    with pytest.raises(DetopsError) as exc:
        _example_image(data, "val")
    assert str(exc.value) == f"{ann}: no images to take the model's input example from"


def test_model_size_counts_the_family_way() -> None:
    import models
    from detops.registry.register import model_size

    model = models.build_model(VARIANT, num_classes=3).eval()
    family = models.family_module(VARIANT)
    got = model_size(model, VARIANT)
    assert got["params"] == float(family.count_params(model))
    assert got["gflops"] == round(float(family.count_gflops(model, image_size=640)), 3)
    assert got["gflops"] != round(float(family.count_gflops(model, image_size=320)), 3)


def test_register_weights_refuses_a_missing_file_or_dataset(tmp_path: Path) -> None:
    from detops.registry.register import register_weights
    from detops.settings import Settings

    settings = Settings(
        project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri="http://127.0.0.1:9"
    )
    with pytest.raises(DetopsError) as exc:
        register_weights(tmp_path / "none.pth", variant="damo_yolo_t", data_root=tmp_path, settings=settings)
    assert str(exc.value) == f"--weights {tmp_path / 'none.pth'}: file not found"
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    with pytest.raises(DetopsError) as exc:
        register_weights(weights, variant="damo_yolo_t", data_root=tmp_path / "nodata", settings=settings)
    assert str(exc.value) == f"--data {tmp_path / 'nodata'}: dataset directory not found"


# --- register_run with deployed results, against a real server ----------------------------------


@pytest.fixture
def run_dir(synth_root: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    run = tmp_path / "run"
    make_checkpoint(run / "best.pt", VARIANT, data_root=data)
    (run / "config.json").write_text(json.dumps({"variant": VARIANT, "data": str(data), "val_split": "val"}))
    (run / "summary.json").write_text(json.dumps({"best_epoch": 7}))
    return run


def test_register_run_tags_every_figure_and_points_challenger(
    run_dir: Path,
    mlflow_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import models
    from detops.deploy.exporting import export_artifact
    from detops.registry.register import register_run
    from detops.settings import Settings
    from detops.tracking.provenance import content_digest
    from detops.tracking.runs import run_id_for

    onnx = tmp_path / "export" / "model.onnx"
    export_artifact(run_dir / "best.pt", out=onnx)
    # the split the evaluation says it scored is the one tagged (the run's config says "val")
    evaluations = {
        "ort": {"AP": 0.25, "reference": {"AP": 0.125}, "split": "val_held_out"},
        "openvino": {"AP": 0.375},
    }
    profiles = {"ort": _profile(5.25, 7.5, cpu="Xeon"), "openvino": _profile(4.0, 6.25, cpu="Xeon")}
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=mlflow_server.url)
    client = RegistryClient(tracking_uri=mlflow_server.url)
    # a model name of this test's own: the server is shared by the session (and by every mutant)
    name = f"detops-{VARIANT}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr("detops.registry.client.model_name", lambda variant: name)
    data = Path(json.loads((run_dir / "config.json").read_text())["data"])
    classes = len(json.loads((data / "annotations" / "instances_val.json").read_text())["categories"])

    caplog.set_level("DEBUG", logger="detops.registry.register")
    reg = register_run(  # into the settings' registry
        run_dir,
        settings=settings,
        deployed={"onnx": str(onnx), "evaluations": evaluations, "profiles": profiles, "max_rel_error": 1e-5},
        data_valid=True,
    )
    assert caplog.records[0].getMessage() == f"registering {VARIANT} from {run_dir}"
    assert (reg.model, reg.version) == (name, 1)
    logging_line = f"logging the pyfunc detector to MLflow run {reg.run_id} and creating the version"
    assert logging_line in [r.getMessage() for r in caplog.records if r.levelname == "DEBUG"]
    assert run_id_for(run_dir) == reg.run_id  # the run directory now names its MLflow run
    version = client.get_version(name, 1)
    model = models.build_model(VARIANT, num_classes=classes)
    family = models.family_module(VARIANT)
    digest, _ = content_digest(data)
    expected = {
        T.VARIANT: VARIANT,
        T.DATASET_VERSION: digest,
        "detops.dataset_tracked_by": "content",
        "detops.dataset_git_revision": "unknown",
        T.DATA_VALID: "true",
        T.GIT_COMMIT: "unknown",
        "detops.git_dirty": "unknown",
        T.IMG_SIZE: "64",
        "detops.num_classes": str(classes),
        T.PARAMS: str(family.count_params(model)),
        T.GFLOPS: repr(round(float(family.count_gflops(model, image_size=640)), 3)),
        T.EXPORT_PARITY: '{"max_rel_error": 1e-05, "passed": true}',
        T.MAP_CHECKPOINT: "0.125",
        T.EVAL_SPLIT: "val_held_out",
        T.SOURCE: "trained",
        T.RUN_DIR: str(run_dir),
        "detops.best_epoch": "7",
        "detops.map.ort": "0.25",
        "detops.map.openvino": "0.375",
        "detops.latency_ms.ort": "5.25",
        "detops.latency_ms.openvino": "4.0",
        "detops.latency_e2e_ms.ort": "7.5",
        "detops.latency_e2e_ms.openvino": "6.25",
        T.RUN_ID: reg.run_id,
    }
    got = {k: v for k, v in version.tags.items() if not k.startswith("detops.latency_env.")}
    assert got == expected
    assert reg.tags == version.tags
    assert json.loads(version.tags["detops.latency_env.ort"])["cpu"] == "Xeon"
    assert client.alias_version(name, "challenger") == 1
    run_tags = client.run_tags(reg.run_id)
    assert run_tags[T.VARIANT] == VARIANT and run_tags[T.SOURCE] == "trained"
    assert run_tags[T.RUN_DIR] == str(run_dir)
    evaluation = client.load_artifact_json(reg.run_id, "registry/evaluation_openvino.json")
    assert evaluation == {"AP": 0.375}
    assert client.load_artifact_json(reg.run_id, "registry/profile_ort.json")["model"] == {"median_ms": 5.25}
    export = client.load_artifact_json(reg.run_id, "registry/export.json")
    assert export == {"path": str(onnx), "max_rel_error": 1e-5}
    from mlflow import MlflowClient

    mlflow_client = MlflowClient(tracking_uri=mlflow_server.url)
    stored = {a.path for a in mlflow_client.list_artifacts(reg.run_id)}
    assert "registry" in stored and "checkpoints" not in stored  # a run's checkpoint is the training's
    # the version and the detector it serves belong to that same MLflow run
    mv = mlflow_client.get_model_version(name, "1")
    detector = mlflow_client.get_logged_model(mv.source.removeprefix("models:/"))
    assert mv.run_id == reg.run_id and detector.source_run_id == reg.run_id


@pytest.fixture(scope="module")
def tiny_onnx(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DAMO-YOLO exported to ONNX: what the stand-in export hands out."""
    from detops.deploy.exporting import export_artifact

    base = tmp_path_factory.mktemp("tiny")
    report, _ = export_artifact(
        make_checkpoint(base / "best.pt", VARIANT, data_root=synth_root), out=base / "m.onnx"
    )
    return Path(report.path)


class _Steps:
    """Stand-ins for the export, the artifact evaluation and the profile that record how register
    calls them (the real steps run in test_register.py and test_reproduce.py, slow): the export
    copies a prepared tiny ONNX file to where it is asked to write."""

    def __init__(self, onnx: Path) -> None:
        self.onnx = onnx
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import detops.deploy.evaluate
        import detops.deploy.exporting
        import detops.deploy.profile

        monkeypatch.setattr(detops.deploy.exporting, "export_artifact", self.export)
        monkeypatch.setattr(detops.deploy.evaluate, "evaluate_backends", self.evaluate)
        monkeypatch.setattr(detops.deploy.profile, "profile_runner", self.profile)

    def export(self, best: Path, *, out: Path) -> Any:
        from types import SimpleNamespace

        from detops.deploy.artifact import read_onnx_metadata
        from detops.weights import load_checkpoint_file

        self.calls.append(("export", Path(best).name, {"out": Path(out)}))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.onnx, out)
        weights = load_checkpoint_file(best)  # the metadata an export of these weights would carry
        meta = dataclasses.replace(
            read_onnx_metadata(out),
            variant=weights["variant"],
            class_names=tuple(weights["class_names"]),
            category_ids=tuple(weights["category_ids"]),
        )
        return SimpleNamespace(path=Path(out), max_rel_error=2e-6), meta

    def evaluate(self, onnx: Path, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("evaluate", Path(onnx), kwargs))
        figures = {"ort": {"AP": 0.5, "reference": {"AP": 0.625}}, "openvino": {"AP": 0.25}}
        return {b: figures[b] for b in kwargs["backends"]}

    def profile(self, runner: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("profile", f"{runner.backend} runner", kwargs))
        model_ms = 3.5 if runner.backend == "ort" else 2.75
        return _profile(model_ms, model_ms + 1.0, cpu="Test CPU")


@pytest.fixture
def recorded(
    tiny_onnx: Path, mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[_Steps, str, Any, RegistryClient]:
    """(steps, model name, settings, client): the recorded steps installed, a registered model name of
    this test's own (the server is shared), settings with a home in ``tmp_path`` and that server."""
    from detops.settings import Settings

    steps = _Steps(tiny_onnx)
    steps.install(monkeypatch)
    name = f"detops-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr("detops.registry.client.model_name", lambda variant: name)
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=mlflow_server.url)
    return steps, name, settings, RegistryClient(tracking_uri=mlflow_server.url)


@pytest.mark.slow
def test_register_run_exports_evaluates_and_profiles_what_it_registers(
    run_dir: Path, recorded: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from detops.registry.register import register_run

    steps, name, settings, client = recorded
    data = Path(json.loads((run_dir / "config.json").read_text())["data"])
    caplog.set_level("INFO", logger="detops.registry.register")
    reg = register_run(run_dir, settings=settings, client=client, profile_seconds=0.25, sample_images=2)
    work = tmp_path / "home" / "registry" / f"{VARIANT}-run"
    onnx = work / "model.onnx"
    assert steps.calls == [
        ("export", "best.pt", {"out": onnx}),
        (
            "evaluate",
            onnx,
            {
                "backends": ("ort", "openvino"),
                "data_root": data,
                "split": "val",
                "reference": run_dir / "best.pt",
            },
        ),
        (
            "profile",
            "ort runner",
            {"artifact": str(onnx), "batch": 1, "warmup": 3, "seconds": 0.25},
        ),
        (
            "profile",
            "openvino runner",
            {"artifact": str(onnx), "batch": 1, "warmup": 3, "seconds": 0.25},
        ),
    ]
    tags = reg.tags
    assert tags[T.DATA_VALID] == "true"  # the run's dataset was validated (it is valid)
    assert (tags["detops.map.ort"], tags["detops.map.openvino"], tags[T.MAP_CHECKPOINT]) == (
        "0.5",
        "0.25",
        "0.625",
    )
    assert (tags["detops.latency_ms.ort"], tags["detops.latency_ms.openvino"]) == ("3.5", "2.75")
    assert (tags["detops.latency_e2e_ms.ort"], tags["detops.latency_e2e_ms.openvino"]) == ("4.5", "3.75")
    assert json.loads(tags[T.EXPORT_PARITY]) == {"passed": True, "max_rel_error": 2e-6}
    assert tags["detops.best_epoch"] == "7"
    assert tags[T.EVAL_SPLIT] == "val"  # the split it evaluated on (the stand-in's figures name none)
    details = sorted(p.name for p in (work / "details").iterdir())
    assert details == [
        "evaluation_openvino.json",
        "evaluation_ort.json",
        "export.json",
        "profile_openvino.json",
        "profile_ort.json",
    ]
    assert json.loads((work / "details" / "export.json").read_text()) == {
        "path": str(onnx),
        "max_rel_error": 2e-6,
    }
    messages = [r.getMessage() for r in caplog.records if r.name == "detops.registry.register"]
    assert messages == [
        f"{VARIANT:<12} validating {data} before registering",
        f"{VARIANT:<12} exporting to ONNX (with ONNX Runtime parity check)",
        f"{VARIANT:<12} evaluating the ONNX artifact on 'val' against the checkpoint",
        f"{VARIANT:<12} profiling on ort, openvino",
        f"{VARIANT:<12} registered as {name} version {reg.version} (MLflow run {reg.run_id})",
    ]
    # a second registration of the same run directory goes into the same MLflow run
    again = register_run(run_dir, settings=settings, client=client, data_valid=False, backends=("ort",))
    assert again.run_id == reg.run_id and again.version == reg.version + 1
    assert steps.calls[-1][2]["seconds"] == 1.5  # the default profile time
    assert again.tags[T.DATA_VALID] == "false" and "detops.map.openvino" not in again.tags


@pytest.mark.slow
def test_register_weights_imports_the_release_file_and_records_it(
    recorded: Any,
    mlflow_server: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib

    from detops.registry.register import register_weights
    from tests.officials import write_coco2017, write_release

    steps, name, settings, client = recorded
    coco = write_coco2017(tmp_path / "coco", images=1, size=64)
    release = write_release("damo_yolo_t", tmp_path / "release")
    digest = hashlib.sha256(release.read_bytes()).hexdigest()
    caplog.set_level("INFO", logger="detops.registry.register")
    import detops.fileio

    hashed: list[Path] = []
    real_sha256 = detops.fileio.sha256_file

    def sha256_file(path: Any) -> str:
        hashed.append(Path(path))
        return real_sha256(path)

    monkeypatch.setattr(detops.fileio, "sha256_file", sha256_file)
    monkeypatch.setattr("detops.weights.sha256_file", sha256_file)
    reg = register_weights(  # into the settings' registry, scored on split "val"
        release,
        variant="damo_yolo_t",
        data_root=coco,
        settings=settings,
        backends=("ort",),
        profile_seconds=0.5,
        tags={T.EVAL_DATA: "coco_val2017"},
    )
    work = tmp_path / "home" / "registry" / f"official-damo_yolo_t-{digest[:12]}"
    assert hashed == [release]  # read once, however large the release file
    from detops.weights import load_checkpoint_file

    assert load_checkpoint_file(work / "best.pt")["source_sha256"] == digest
    assert steps.calls[0] == ("export", "best.pt", {"out": work / "model.onnx"})
    assert steps.calls[1][2] == {
        "backends": ("ort",),
        "data_root": coco,
        "split": "val",
        "reference": work / "best.pt",
    }
    assert steps.calls[2][2]["seconds"] == 0.5
    messages = [r.getMessage() for r in caplog.records if r.name == "detops.registry.register"]
    assert messages[:2] == [
        f"damo_yolo_t  importing {release.name} (sha256 {digest[:12]})",
        f"damo_yolo_t  validating {coco} before registering",
    ]
    tags = client.get_version(name, reg.version).tags
    assert tags[T.SOURCE] == "official" and tags[T.SOURCE_FILE] == release.name
    assert tags[T.SOURCE_SHA256] == digest and tags[T.EVAL_DATA] == "coco_val2017"
    assert tags[T.PARAMS] == str(models_params("damo_yolo_t"))
    run = client.run_tags(reg.run_id)
    assert run[T.SOURCE] == "official" and T.RUN_DIR not in run
    from mlflow import MlflowClient

    mlflow_run = MlflowClient(tracking_uri=mlflow_server.url).get_run(reg.run_id)
    assert mlflow_run.info.run_name == f"register official {release.name}"
    assert mlflow_run.info.status == "FINISHED"
    listed = {
        f.path for f in MlflowClient(tracking_uri=mlflow_server.url).list_artifacts(reg.run_id, "checkpoints")
    }
    assert listed == {"checkpoints/best.pt"}


def models_params(variant: str) -> int:
    """The published parameter count of ``variant`` (80 classes): what an imported release has."""
    import models

    published = models.get_variant(variant).published
    assert published is not None
    return int(published.params_exact)


def test_a_run_whose_dataset_is_gone_is_refused(run_dir: Path, tmp_path: Path) -> None:
    from detops.registry.register import register_run
    from detops.settings import Settings

    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "data": str(tmp_path / "gone")}))
    settings = Settings(
        project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri="http://127.0.0.1:9"
    )
    with pytest.raises(DetopsError) as exc:
        register_run(run_dir, settings=settings, client=_NoRuns())
    assert (
        str(exc.value)
        == f"{run_dir / 'config.json'}: field 'data': dataset {tmp_path / 'gone'} not found here"
    )


def test_a_run_id_resolves_to_its_run_directory_or_its_stored_files(
    run_dir: Path, mlflow_server: Any, tmp_path: Path
) -> None:
    """An MLflow run id: the run directory its ``detops.run_dir`` tag names when that holds the files,
    otherwise ``checkpoints/best.pt`` and ``config.json`` fetched from the run into the home."""
    from detops.registry.register import _resolve_run
    from detops.settings import Settings

    client = RegistryClient(tracking_uri=mlflow_server.url)
    settings = Settings(project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri=mlflow_server.url)
    config = json.loads((run_dir / "config.json").read_text())
    here = client.create_run(
        experiment="detops-register-tests", run_name="here", tags={T.RUN_DIR: str(run_dir)}
    )
    files = _resolve_run(here, client=client, settings=settings)
    assert (files.run_dir, files.best, files.run_id, files.config) == (
        run_dir,
        run_dir / "best.pt",
        here,
        config,
    )

    elsewhere = client.create_run(
        experiment="detops-register-tests",
        run_name="elsewhere",
        tags={T.RUN_DIR: str(tmp_path / "other-machine")},
    )
    client.log_run_file(elsewhere, run_dir / "best.pt", artifact_path="checkpoints")
    client.log_run_file(elsewhere, run_dir / "config.json")
    files = _resolve_run(elsewhere, client=client, settings=settings)
    assert files.run_id == elsewhere and files.config == config
    assert files.best.name == "best.pt" and files.best.read_bytes() == (run_dir / "best.pt").read_bytes()
    assert files.best.is_relative_to(tmp_path / "home") and files.run_dir == files.best.parent
    assert (files.run_dir / "config.json").is_file()
    # the directory the tag names is here but holds only the config: the checkpoint is fetched
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(run_dir / "config.json", partial / "config.json")
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=mlflow_server.url).set_tag(elsewhere, T.RUN_DIR, str(partial))
    files = _resolve_run(elsewhere, client=client, settings=settings)
    assert files.best.is_relative_to(tmp_path / "home") and files.best.is_file()


@pytest.fixture
def handed_on(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``register_run``/``register_weights`` hand to their steps: the dataset validation and the
    registration itself replaced by recorders (``validate``: root and sample; ``checkpoint``: the
    registration's keyword arguments)."""
    from detops.data.validate import DEFAULT_SAMPLE_IMAGES
    from detops.registry import register

    seen: dict[str, Any] = {}

    def validate(root: Any, *, sample_images: int | None = DEFAULT_SAMPLE_IMAGES) -> Any:  # its signature
        seen["validate"] = (Path(root), sample_images)
        return dataclasses.make_dataclass("Result", ["success"])(True)

    def checkpoint(best: Path, **kw: Any) -> register.Registration:
        seen["checkpoint"] = kw
        return register.Registration("m", 1, "ab" * 16, {})

    monkeypatch.setattr("detops.data.validate.validate_dataset", validate)
    monkeypatch.setattr(register, "_register_checkpoint", checkpoint)
    return seen


def test_register_run_hands_its_settings_client_split_and_sample_on(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handed_on: dict[str, Any]
) -> None:
    """The caller's settings and client to the run's resolution and the dataset's pull, the run's
    validation split (``val`` when the config has none), 64 images sampled by validation."""
    from detops.registry import register
    from detops.settings import Settings

    seen = handed_on
    real_resolve, real_local = register._resolve_run, register._local_data

    def resolve(run: Any, *, client: Any, settings: Any) -> Any:
        seen["resolve"] = (client, settings)
        return real_resolve(run, client=client, settings=settings)

    def local(data_root: Path, settings: Any) -> Path:
        seen["local"] = settings
        return real_local(data_root, settings)

    monkeypatch.setattr(register, "_resolve_run", resolve)
    monkeypatch.setattr(register, "_local_data", local)
    written: list[tuple[Path, str]] = []
    monkeypatch.setattr("detops.tracking.runs.write_run_id", lambda d, r: written.append((Path(d), r)))
    settings = Settings(
        project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri="http://127.0.0.1:9"
    )
    client = _NoRuns()
    config = json.loads((run_dir / "config.json").read_text())
    data = Path(config["data"])
    for val_split, split in (("val", "val"), ("", "val"), (None, "val"), ("valid", "valid")):
        (run_dir / "config.json").write_text(json.dumps({**config, "val_split": val_split}))
        seen.clear()
        register.register_run(run_dir, settings=settings, client=client)
        assert seen["resolve"][0] is client and seen["resolve"][1] is settings
        assert seen["local"] is settings
        assert seen["validate"] == (data, 64)
        assert seen["checkpoint"]["split"] == split and seen["checkpoint"]["settings"] is settings
        assert seen["checkpoint"]["client"] is client and seen["checkpoint"]["data_valid"] is True
        assert seen["checkpoint"]["profile_seconds"] == 1.5
    assert written == [(run_dir, "ab" * 16)] * 4  # the directory names the run it was registered in
    (run_dir / "mlflow_run_id").write_text("ab" * 16 + "\n")  # registered into the run it names
    register.register_run(run_dir, settings=settings, client=client)
    assert len(written) == 4  # nothing written again


def test_register_weights_hands_its_defaults_on(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handed_on: dict[str, Any]
) -> None:
    """``register_weights`` with its defaults: split ``val``, 64 images sampled by validation, 1.5 s
    of profile on the CPU backends, the caller's settings and client."""
    from detops.registry import register
    from detops.settings import Settings

    imported: list[tuple[str, Path, str | None]] = []
    monkeypatch.setattr(
        "detops.weights.import_official",
        lambda v, src, dst, *, source_sha256=None: imported.append((v, dst, source_sha256)),
    )
    weights = tmp_path / "release.pth"
    weights.write_bytes(b"weights")
    settings = Settings(
        project_root=tmp_path, home=tmp_path / "home", mlflow_tracking_uri="http://127.0.0.1:9"
    )
    client = _NoRuns()
    register.register_weights(
        weights, variant="damo_yolo_t", data_root=synth_root, settings=settings, client=client
    )
    assert handed_on["validate"] == (synth_root, 64)
    kw = handed_on["checkpoint"]
    assert (kw["split"], kw["profile_seconds"], tuple(kw["backends"])) == ("val", 1.5, ("ort", "openvino"))
    assert kw["settings"] is settings and kw["client"] is client and kw["data_valid"] is True
    import hashlib

    assert imported == [("damo_yolo_t", kw["work"] / "best.pt", hashlib.sha256(b"weights").hexdigest())]


def test_measure_refuses_a_checkpoint_that_does_not_fit_the_variant(synth_root: Path, tmp_path: Path) -> None:
    """Params and GFLOPs are counted on the model the checkpoint loads into, strictly: a checkpoint
    with a key missing is not measured as if it fitted."""
    import torch

    from detops.registry.register import _measure

    best = make_checkpoint(tmp_path / "best.pt", VARIANT, data_root=synth_root)
    classes = len(json.loads((synth_root / "annotations" / "instances_val.json").read_text())["categories"])
    assert _measure(best, variant=VARIANT, num_classes=classes)["params"] > 0
    state = torch.load(best, map_location="cpu", weights_only=False)
    dropped = next(iter(state["model"]))
    for weights in (state["model"], (state.get("ema") or {}).get("module", {})):
        weights.pop(dropped, None)
    torch.save(state, best)
    with pytest.raises(RuntimeError, match="Missing key"):
        _measure(best, variant=VARIANT, num_classes=classes)


def _example_of(image: np.ndarray, root: Path) -> np.ndarray:
    """The decoded input example of a ``val`` split under ``root`` holding ``image`` alone."""
    from detops.registry.register import _example_image

    (root / "val").mkdir()
    (root / "annotations").mkdir()
    cv2.imwrite(str(root / "val" / "a.png"), image)
    h, w = image.shape[:2]
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": w, "height": h}], "annotations": []}
    (root / "annotations" / "instances_val.json").write_text(json.dumps({**coco, "categories": []}))
    return cv2.imdecode(np.frombuffer(_example_image(root, "val"), np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(161, 80, (80, 160)), (1600, 5, (1, 160)), (5, 1600, (160, 1))],  # (height, width) after
)
def test_example_image_shrinks_to_160_px_keeping_at_least_one_pixel(
    tmp_path: Path, width: int, height: int, expected: tuple[int, int]
) -> None:
    """By default the longest side is cut to 160 px (an image one pixel larger is shrunk), and a side
    that would round to nothing keeps one pixel."""
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert _example_of(image, tmp_path).shape[:2] == expected


def test_example_image_averages_when_it_shrinks(tmp_path: Path) -> None:
    """Pixel noise shrunk tenfold averages out (area interpolation) instead of being sampled."""
    noise = np.random.default_rng(0).integers(0, 256, (800, 1600, 3), dtype=np.uint8)
    small = _example_of(noise, tmp_path)
    assert small.shape[:2] == (80, 160) and small.std() < 12.0  # a sampled image keeps std ~74


def test_an_example_opencv_cannot_encode_is_one_error(
    synth_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detops.registry.register import _example_image

    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (False, None))
    with pytest.raises(DetopsError) as exc:
        _example_image(synth_root, "val")
    assert str(exc.value) == "OpenCV could not encode the model's input example"
