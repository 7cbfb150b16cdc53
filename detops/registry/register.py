"""``register_run``: turn a finished training run into a new version of ``detops-<variant>``.

Given a run directory (or the MLflow run id of one), it:

1. validates the run's dataset (Great Expectations, sampled images) and reads its version (the DVC
   hash when DVC tracks it, otherwise a content digest);
2. exports the best checkpoint to ONNX (the export refuses to write a file that fails its ONNX
   Runtime parity check; the per-output relative errors are kept);
3. evaluates that ONNX artifact on the run's validation split against the checkpoint (ONNX Runtime,
   with the checkpoint as reference) and on OpenVINO;
4. profiles it on the CPU backends (median model time at batch 1 and the environment);
5. measures params and GFLOPs (640x640, the form its family publishes) of the trained model;
6. logs the served model into the training's MLflow run with MLflow 3's model logging: a pyfunc
   detector (:mod:`detops.registry.pyfunc`: encoded images in, detections on the original images out,
   the ONNX file among its artifacts) with its signature and a real image of the split as input
   example; the evaluation and profile JSON beside it under ``registry/``;
7. creates the version with every figure as a ``detops.*`` tag (names in :mod:`detops.registry.tags`)
   and points ``challenger`` at it (registered, not yet judged; see :mod:`detops.registry.promote`).

Nothing is registered when any step fails.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.registry import tags as T

CPU_BACKENDS: tuple[str, ...] = ("ort", "openvino")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """What ``register_run`` created: model name, version number, the MLflow run and every tag."""

    model: str
    version: int
    run_id: str
    tags: dict[str, str]


@dataclass(frozen=True)
class _RunFiles:
    run_dir: Path
    best: Path
    config: dict[str, Any]
    run_id: str | None


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not path.is_file():
        raise DetopsError(f"run directory {run_dir}: no config.json (is it a `detops train` run?)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DetopsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    for key in ("variant", "data"):
        if not isinstance(config.get(key), str):
            raise DetopsError(f"{path}: field {key!r} missing or not a string: {config.get(key)!r}")
    return dict(config)


def _resolve_run(run: str | os.PathLike[str], *, client: Any, settings: Any) -> _RunFiles:
    """A run directory as is; an MLflow run id through its ``detops.run_dir`` tag, or by fetching its
    ``config.json`` and ``checkpoints/best.pt`` (``fetch_run_artifact``: once per home, shared with
    the export of the same run)."""
    from detops.tracking.runs import fetch_run_artifact, run_id_for

    path = Path(run)
    if path.is_dir():
        best = path / "best.pt"
        if not best.is_file():
            raise DetopsError(f"run directory {path}: no best.pt")
        return _RunFiles(path, best, _read_config(path), run_id_for(path))
    text = str(run).strip()
    if not _RUN_ID.match(text):
        raise DetopsError(
            f"register: {text!r} is neither a run directory nor an MLflow run id (32 hex digits)"
        )
    if not client.run_exists(text):
        raise DetopsError(f"register: no MLflow run {text} on {client.display_uri}")
    local = client.run_tags(text).get("detops.run_dir")
    if local and (Path(local) / "best.pt").is_file() and (Path(local) / "config.json").is_file():
        return _RunFiles(Path(local), Path(local) / "best.pt", _read_config(Path(local)), text)
    best = fetch_run_artifact(text, settings=settings)
    fetch_run_artifact(text, "config.json", settings=settings)
    return _RunFiles(best.parent, best, _read_config(best.parent), text)


def _example_image(data_root: Path, split: str, *, max_side: int = 160) -> bytes:
    """A small JPEG of the split's first image (longest side at most ``max_side``): the served model's
    input example, so the example a reader sees in MLflow is a real image of the data it learnt from."""
    import cv2

    from detops.data.dataset import decode_image
    from detops.data.layout import find_split, load_coco_json

    found = find_split(data_root, split)
    images = load_coco_json(found.annotations)["images"]
    if not images:
        raise DetopsError(f"{found.annotations}: no images to take the model's input example from")
    rgb = decode_image(found.images / str(images[0]["file_name"]))
    scale = max_side / max(rgb.shape[:2])
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise DetopsError("OpenCV could not encode the model's input example")
    return bytes(encoded.tobytes())


def model_size(model: Any, variant: str) -> dict[str, float]:
    """Params and GFLOPs (640x640) of ``model``, counted the way ``variant``'s family publishes them."""
    import models

    family = models.family_module(variant)
    return {
        "params": float(family.count_params(model)),
        "gflops": round(float(family.count_gflops(model, image_size=640)), 3),
    }


def _measure(best: Path, *, variant: str, num_classes: int) -> dict[str, float]:
    """Params and GFLOPs (640x640) of the trained model, counted the way its family publishes them."""
    import models
    from detops.engine.checkpoint import model_weights
    from detops.weights import load_checkpoint_file

    model = models.build_model(variant, num_classes=num_classes).eval()
    model.load_state_dict(model_weights(load_checkpoint_file(best)), strict=True)
    return model_size(model, variant)


def _local_data(data_root: Path, settings: Any) -> Path:
    """The dataset a run trained on, on this machine: its recorded path, or, for a version that the
    training's worker pulled (``.../datasets/<version>``), this machine's copy of that version
    (pulled here when missing)."""
    from detops.data.versioning import pull_version, pulled_version

    version = pulled_version(data_root)
    if data_root.is_dir() or version is None:
        return data_root
    return pull_version(version, settings=settings)


def register_run(
    run: str | os.PathLike[str],
    *,
    settings: Any = None,
    client: Any = None,
    backends: Sequence[str] = CPU_BACKENDS,
    profile_seconds: float = 1.5,
    sample_images: int | None = 64,
    deployed: dict[str, Any] | None = None,
    data_valid: bool | None = None,
) -> Registration:
    """Register the run ``run`` (a run directory or an MLflow run id) as a new version of
    ``detops-<variant>``; see the module docstring for the steps and tags.

    ``settings``: project root, home (work files under ``<home>/registry``) and tracking store
    (default: the process settings). ``client``: a :class:`~detops.registry.client.RegistryClient`
    (default: one for the settings). ``sample_images``: images per split decoded by data validation.
    ``deployed``: results this process already has for the run (the demo's deploy step): ``onnx``
    (path), ``evaluations`` ({backend: ``evaluate_artifact`` stats}, at least one with the checkpoint
    as reference), ``profiles`` ({backend: profile dict}) and optionally ``max_rel_error``; those
    steps are then not repeated. ``data_valid``: the outcome of a validation of this dataset that just ran (skips it).
    Raises ``DetopsError`` (one line) for a bad run or any failed step; nothing is registered then.
    """
    from detops.data.validate import validate_dataset
    from detops.registry.client import open_registry
    from detops.settings import get_settings
    from detops.tracking.runs import write_run_id

    settings = settings or get_settings()
    with open_registry(settings, client=client) as client:
        work_root = Path(settings.home) / "registry"
        files = _resolve_run(run, client=client, settings=settings)
        config = files.config
        variant = str(config["variant"])
        data_root = _local_data(Path(config["data"]), settings)
        split = str(config.get("val_split") or "val")
        if not data_root.is_dir():
            raise DetopsError(
                f"{files.run_dir / 'config.json'}: field 'data': dataset {data_root} not found here"
            )
        log.debug("registering %s from %s", variant, files.run_dir)
        if data_valid is None:
            log.info("%-12s validating %s before registering", variant, data_root)
            data_valid = validate_dataset(data_root, sample_images=sample_images).success
        reg = _register_checkpoint(
            files.best,
            variant=variant,
            data_root=data_root,
            split=split,
            data_valid=data_valid,
            work=work_root / f"{variant}-{files.run_dir.name}",
            run_id=files.run_id,
            run_name=f"register {files.run_dir.name}",
            tags={
                T.SOURCE: "trained",
                T.RUN_DIR: str(files.run_dir),
                "detops.best_epoch": str(_summary_field(files.run_dir, "best_epoch")),
            },
            settings=settings,
            client=client,
            backends=backends,
            profile_seconds=profile_seconds,
            deployed=deployed,
        )
        if reg.run_id != files.run_id and not files.run_dir.resolve().is_relative_to(work_root.resolve()):
            write_run_id(files.run_dir, reg.run_id)
        return reg


def register_weights(
    weights: str | os.PathLike[str],
    *,
    variant: str,
    data_root: str | os.PathLike[str],
    split: str = "val",
    settings: Any = None,
    client: Any = None,
    backends: Sequence[str] = CPU_BACKENDS,
    profile_seconds: float = 1.5,
    sample_images: int | None = 64,
    tags: dict[str, str] | None = None,
) -> Registration:
    """Register an official release file of ``variant`` (no training run) as a new version of
    ``detops-<variant>``: imported strictly (``detops weights import``; a file that does not match the
    variant is refused with the import's one-line error and nothing is registered), then the same
    export, artifact evaluation on ``split`` of ``data_root``, profile and registration as a trained
    run. The version records ``detops.source=official``, the file's name and sha256; the imported
    weight file is the MLflow run's ``checkpoints/best.pt``. ``tags``: further version tags."""
    from detops.data.validate import validate_dataset
    from detops.fileio import sha256_file
    from detops.registry.client import open_registry
    from detops.settings import get_settings
    from detops.weights import import_official

    settings = settings or get_settings()
    with open_registry(settings, client=client) as client:
        source = Path(weights)
        if not source.is_file():
            raise DetopsError(f"--weights {source}: file not found")
        data = Path(data_root)
        if not data.is_dir():
            raise DetopsError(f"--data {data}: dataset directory not found")
        digest = sha256_file(source)
        work = Path(settings.home) / "registry" / f"official-{variant}-{digest[:12]}"
        log.info("%-12s importing %s (sha256 %s)", variant, source.name, digest[:12])
        import_official(variant, source, work / "best.pt", source_sha256=digest)
        log.info("%-12s validating %s before registering", variant, data)
        data_valid = validate_dataset(data, sample_images=sample_images).success
        return _register_checkpoint(
            work / "best.pt",
            variant=variant,
            data_root=data,
            split=split,
            data_valid=data_valid,
            work=work,
            run_id=None,
            run_name=f"register official {source.name}",
            tags={
                T.SOURCE: "official",
                T.SOURCE_FILE: source.name,
                T.SOURCE_SHA256: digest,
                **(tags or {}),
            },
            settings=settings,
            client=client,
            backends=backends,
            profile_seconds=profile_seconds,
            log_checkpoint=True,
        )


def _register_checkpoint(
    best: Path,
    *,
    variant: str,
    data_root: Path,
    split: str,
    data_valid: bool,
    work: Path,
    run_id: str | None,
    run_name: str,
    tags: dict[str, str],
    settings: Any,
    client: Any,
    backends: Sequence[str],
    profile_seconds: float,
    deployed: dict[str, Any] | None = None,
    log_checkpoint: bool = False,
) -> Registration:
    """Steps 2-7 of the module docstring for the checkpoint or weight file ``best``, logged into MLflow
    run ``run_id`` (a new run ``run_name`` in ``detops-<variant>`` when None or gone; with
    ``log_checkpoint`` ``best`` becomes its ``checkpoints/best.pt``); ``tags`` join the version's."""
    from detops.deploy.artifact import read_onnx_metadata
    from detops.deploy.evaluate import evaluate_backends
    from detops.deploy.exporting import export_artifact
    from detops.deploy.profile import profile_runner
    from detops.deploy.runners.base import load_runner
    from detops.fileio import write_json
    from detops.registry.client import model_name
    from detops.registry.promote import refresh_challenger
    from detops.tracking.provenance import code_version, dataset_version

    name = model_name(variant)
    data = dataset_version(data_root, project_root=settings.project_root)
    code = code_version(settings.project_root)
    if deployed is not None:
        onnx_path = Path(deployed["onnx"])
        meta = read_onnx_metadata(onnx_path)
        max_rel_error = deployed.get("max_rel_error")
        evaluations: dict[str, dict[str, Any]] = dict(deployed["evaluations"])
        profiles: dict[str, dict[str, Any]] = dict(deployed["profiles"])
    else:
        log.info("%-12s exporting to ONNX (with ONNX Runtime parity check)", variant)
        export, meta = export_artifact(best, out=work / "model.onnx")
        onnx_path, max_rel_error = export.path, export.max_rel_error
        log.info("%-12s evaluating the ONNX artifact on '%s' against the checkpoint", variant, split)
        evaluations = evaluate_backends(
            onnx_path, backends=backends, data_root=data_root, split=split, reference=best
        )
        log.info("%-12s profiling on %s", variant, ", ".join(backends))
        profiles = {
            backend: profile_runner(
                load_runner(onnx_path, backend=backend),
                artifact=str(onnx_path),
                batch=1,
                warmup=3,
                seconds=profile_seconds,
            )
            for backend in backends
        }
    scored = next(ev for ev in evaluations.values() if "reference" in ev)
    checkpoint_map = float(scored["reference"]["AP"])
    sizes = _measure(best, variant=variant, num_classes=meta.num_classes)

    version_tags: dict[str, str] = {
        T.VARIANT: variant,
        T.DATASET_VERSION: data.digest,
        "detops.dataset_tracked_by": data.tracked_by,
        "detops.dataset_git_revision": data.git_revision,
        T.DATA_VALID: T.fmt_bool(data_valid),
        T.GIT_COMMIT: code["git_commit"],
        "detops.git_dirty": code["git_dirty"],
        T.IMG_SIZE: str(meta.input_size),
        "detops.num_classes": str(meta.num_classes),
        T.PARAMS: str(int(sizes["params"])),
        T.GFLOPS: T.fmt_float(sizes["gflops"]),
        # export_artifact writes no file that fails its parity check, so an artifact here passed it
        T.EXPORT_PARITY: json.dumps({"passed": True, "max_rel_error": max_rel_error}, sort_keys=True),
        T.MAP_CHECKPOINT: T.fmt_float(checkpoint_map),
        T.EVAL_SPLIT: str(scored.get("split", split)),  # what was measured (the flow's own evaluation)
        **tags,
    }
    for backend, ev in evaluations.items():
        version_tags[T.map_tag(backend)] = T.fmt_float(float(ev["AP"]))
    version_tags.update(latency_tags(profiles))
    for backend, prof in profiles.items():
        version_tags[f"detops.latency_e2e_ms.{backend}"] = T.fmt_float(float(prof["end_to_end"]["median_ms"]))

    if run_id is None or not client.run_exists(run_id):
        run_tags = {T.VARIANT: variant, **{k: v for k, v in tags.items() if k in (T.RUN_DIR, T.SOURCE)}}
        run_id = client.create_run(experiment=f"detops-{variant}", run_name=run_name, tags=run_tags)
        client.set_run_terminated(run_id)
    version_tags[T.RUN_ID] = run_id

    details = work / "details"
    for backend, ev in evaluations.items():
        write_json(details / f"evaluation_{backend}.json", ev)
    for backend, prof in profiles.items():
        write_json(details / f"profile_{backend}.json", prof)
    write_json(details / "export.json", {"path": str(onnx_path), "max_rel_error": max_rel_error})
    log.debug("logging the pyfunc detector to MLflow run %s and creating the version", run_id)
    client.log_run_artifacts(run_id, details, artifact_path="registry")
    if log_checkpoint:
        client.log_run_file(run_id, best, artifact_path="checkpoints")
    model_uri, model_id = client.log_detector_model(
        run_id=run_id, onnx_path=onnx_path, example_image=_example_image(data_root, split)
    )
    version = client.create_version(
        name, source=model_uri, run_id=run_id, tags=version_tags, model_id=model_id
    )
    refresh_challenger(client, name)  # registered, not yet judged: the newest candidate is challenger
    log.info("%-12s registered as %s version %d (MLflow run %s)", variant, name, version, run_id)
    return Registration(model=name, version=version, run_id=run_id, tags=version_tags)


def _summary_field(run_dir: Path, key: str) -> Any:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get(key, "")
    except (OSError, json.JSONDecodeError):
        return ""


def latency_tags(profiles: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Per backend of ``profiles`` ({backend: profile}): the median model time and its environment,
    as the tags the report and selection read."""
    tags: dict[str, str] = {}
    for backend, prof in profiles.items():
        tags[T.latency_tag(backend)] = T.fmt_float(float(prof["model"]["median_ms"]))
        tags[T.latency_env_tag(backend)] = json.dumps(env_summary(prof), sort_keys=True)[:4900]
    return tags


def env_summary(profile: dict[str, Any]) -> dict[str, Any]:
    """The part of a profile's environment a reader of a latency figure needs, plus the method."""
    env = dict(profile.get("environment", {}))
    keep = {k: env[k] for k in sorted(env) if not isinstance(env[k], dict | list)}
    keep["batch"] = profile.get("batch")
    keep["input_size"] = profile.get("input_size")
    keep["precision"] = profile.get("precision")
    keep["device"] = profile.get("device")
    return keep
