"""``detops export SOURCE``: a checkpoint, run, weight file or bare variant as a verified ONNX artifact."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from detops.deploy.artifact import (
    ArtifactMeta,
    ExportSource,
    default_classes,
    meta_from_checkpoint,
    resolve_source,
)
from detops.errors import DetopsError
from detops.export import DEFAULT_OPSET, ExportReport, export_onnx
from detops.fileio import sha256_file


def default_output(source: ExportSource, *, image_size: int, home: Path, end2end: bool = False) -> Path:
    """Beside the checkpoint (``best.pt`` -> ``best.onnx``, end-to-end ``best_e2e.onnx``); a bare
    variant goes to ``<home>/exports/<variant>_<size>[_e2e].onnx``."""
    tail = "_e2e.onnx" if end2end else ".onnx"
    if source.path is not None:
        return source.path.with_name(source.path.stem + tail)
    return home / "exports" / f"{source.variant}_{image_size}{tail}"


def export_artifact(
    source: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    home: Path | None = None,
    end2end: bool = False,
) -> tuple[ExportReport, ArtifactMeta]:
    """Export ``source`` (see ``resolve_source``) to ONNX with its ``ArtifactMeta`` in the file.

    The ONNX Runtime parity check of ``detops.export.export_onnx`` runs before the file appears; on
    any failure nothing is written. ``batch`` ``None`` keeps a dynamic batch axis. The input size
    defaults to the size the checkpoint was trained at (the variant's for weights and bare names).

    ``end2end``: the graph ends in the family's post-processing (NMS or top-K) and outputs final
    detections per image (see ``ArtifactMeta.end2end``); K and the thresholds are the family's
    post-processor's, recorded in the metadata. The default file name gains ``_e2e``.
    """
    import models
    from detops.engine.checkpoint import model_weights
    from detops.weights import load_checkpoint_file

    resolved = resolve_source(source)
    variant = models.get_variant(resolved.variant)
    if resolved.path is None:
        names, ids = default_classes(80)
        model = models.build_model(variant.name, num_classes=80)
        meta = ArtifactMeta(
            variant=variant.name,
            family=variant.family,
            class_names=names,
            category_ids=ids,
            input_size=int(image_size if image_size is not None else variant.input_size),
            pixel_scale=float(variant.pixel_scale),
        )
        from detops import __version__

        meta = replace(meta, detops_version=__version__)
    else:
        ckpt = load_checkpoint_file(resolved.path)
        meta = meta_from_checkpoint(ckpt, sha256=sha256_file(resolved.path), input_size=image_size)
        model = models.build_model(variant.name, num_classes=meta.num_classes)
        try:
            model.load_state_dict(model_weights(ckpt), strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise DetopsError(f"{resolved.path}: weights do not fit {variant.name} ({first})") from None
    try:
        models.check_input_size(variant, meta.input_size)
    except ValueError as exc:
        raise DetopsError(f"--img-size {meta.input_size}: {exc}") from None
    meta = replace(meta, batch=batch, opset=opset)
    postprocessor = None
    if end2end:
        postprocessor = models.build_postprocessor(variant.name, num_classes=meta.num_classes)
        settings = models.family_module(variant.name).end2end_settings(postprocessor)
        meta = replace(
            meta,
            end2end=True,
            max_detections=settings.max_detections,
            score_threshold=settings.score_threshold,
            iou_threshold=settings.iou_threshold,
        )
    dst = (
        Path(out)
        if out is not None
        else default_output(resolved, image_size=meta.input_size, home=_home(home), end2end=end2end)
    )
    report = export_onnx(
        variant.name,
        model,
        dst,
        image_size=meta.input_size,
        opset=opset,
        batch=batch,
        metadata=meta.to_metadata_props(),
        postprocessor=postprocessor,
    )
    return report, meta


def _home(home: Path | None) -> Path:
    if home is not None:
        return home
    from detops.settings import get_settings

    return Path(get_settings().home)
