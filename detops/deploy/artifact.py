"""What a deployable file is and what it carries: kinds, metadata, and where a name points.

Three kinds of artifact exist: a training checkpoint or weight file (``.pt``/``.pth``), an ONNX file
(``.onnx``) and a TensorRT engine (``.engine``/``.plan``). Every artifact answers the same questions
through ``ArtifactMeta``: which variant, which classes (names and the dataset's category ids), which
input size and pixel range, and which source it came from.

ONNX files carry the metadata in ``metadata_props``, one ``detops.<field>`` key per field with a JSON
value, so any ONNX tool shows them and ``read_onnx_metadata`` gets them back exactly.

``resolve_artifact`` is the one place a user-given name becomes a file path (a run directory means its
``best.pt``); the registry stage extends it for ``models:/`` URIs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from detops.errors import DetopsError

META_PREFIX = "detops."
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")

KIND_SUFFIXES: dict[str, tuple[str, ...]] = {
    "checkpoint": (".pt", ".pth"),
    "onnx": (".onnx",),
    "tensorrt": (".engine", ".plan"),
}


@dataclass(frozen=True)
class ArtifactMeta:
    """What an artifact knows about itself.

    Attributes:
        variant: variant row name, e.g. ``"damo_yolo_t"``.
        family: ``"damo_yolo"`` or ``"rtdetrv2"``.
        class_names: one name per contiguous label 0..C-1.
        category_ids: the dataset's category id of each label (COCO results use these).
        input_size: square network input size in pixels.
        pixel_scale: input value range, 255.0 (0-255) or 1.0 (0-1).
        source_sha256: sha256 of the checkpoint/weights the artifact was made from ("" for random init).
        detops_version: ``detops.__version__`` that wrote it.
        precision: ``fp32`` unless a later stage quantised it.
        batch: the fixed batch size of the graph, ``None`` when the batch axis is dynamic.
        opset: ONNX opset (``None`` for checkpoints and engines).
        end2end: the graph's outputs are final detections (``num_dets`` [B], ``boxes`` [B, K, 4] xyxy
            in network-input pixels, ``scores`` [B, K], ``labels`` [B, K], padded to K): runners only
            cut them to ``num_dets`` and rescale, they run no NMS.
        max_detections: K of an end-to-end graph (``None`` otherwise).
        score_threshold: per-class score threshold inside an end-to-end graph (``None``: none).
        iou_threshold: class-wise NMS IoU threshold inside an end-to-end graph (``None``: no NMS).
    """

    variant: str
    family: str
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    input_size: int
    pixel_scale: float
    source_sha256: str = ""
    detops_version: str = ""
    precision: str = "fp32"
    batch: int | None = None
    opset: int | None = None
    end2end: bool = False
    max_detections: int | None = None
    score_threshold: float | None = None
    iou_threshold: float | None = None

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.category_ids):
            raise ValueError(
                f"class_names has {len(self.class_names)} entries but category_ids {len(self.category_ids)}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.end2end and not self.max_detections:
            raise ValueError("an end-to-end artifact needs max_detections")

    @property
    def num_classes(self) -> int:
        """Number of classes (length of ``class_names``)."""
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists)."""
        out = asdict(self)
        out["class_names"] = list(self.class_names)
        out["category_ids"] = list(self.category_ids)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> ArtifactMeta:
        """Inverse of ``to_dict``; unknown or missing fields are a one-line ``DetopsError`` naming ``source``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DetopsError(f"{source}: unknown artifact metadata field(s) {', '.join(unknown)}")
        try:
            values = dict(data)
            values["class_names"] = tuple(str(n) for n in data["class_names"])
            values["category_ids"] = tuple(int(c) for c in data["category_ids"])
            values["input_size"] = int(data["input_size"])
            values["pixel_scale"] = float(data["pixel_scale"])
            return cls(**values)
        except KeyError as exc:
            raise DetopsError(f"{source}: artifact metadata lacks field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise DetopsError(f"{source}: bad artifact metadata ({exc})") from None

    def to_metadata_props(self) -> dict[str, str]:
        """``{"detops.<field>": JSON value}`` for ONNX ``metadata_props``."""
        return {META_PREFIX + k: json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_metadata_props(cls, props: dict[str, str], *, source: str) -> ArtifactMeta:
        """Inverse of ``to_metadata_props``; keys without the ``detops.`` prefix are ignored."""
        ours = {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        if not ours:
            raise DetopsError(f"{source}: no detops metadata (export it with `detops export`)")
        try:
            decoded = {k: json.loads(v) for k, v in ours.items()}
        except json.JSONDecodeError as exc:
            raise DetopsError(f"{source}: artifact metadata is not valid JSON ({exc})") from None
        return cls.from_dict(decoded, source=source)


def artifact_kind(path: str | os.PathLike[str]) -> str:
    """``"checkpoint"``, ``"onnx"`` or ``"tensorrt"`` from the file suffix; ``DetopsError`` otherwise."""
    suffix = Path(path).suffix.lower()
    for kind, suffixes in KIND_SUFFIXES.items():
        if suffix in suffixes:
            return kind
    known = ", ".join(s for group in KIND_SUFFIXES.values() for s in group)
    raise DetopsError(f"{path}: unknown artifact kind {suffix or '(no suffix)'!r}; expected one of {known}")


def resolve_artifact(artifact: str | os.PathLike[str]) -> Path:
    """The file a user-given artifact name points at: a file as is, a run directory as its ``best.pt``.

    This is the single hook for other naming schemes (the registry adds ``models:/...`` URIs here).
    Raises a one-line ``DetopsError`` when nothing is there.
    """
    if str(artifact).startswith("models:"):  # models:/detops-<variant>@alias or /N: the version's ONNX
        from detops.registry.uri import resolve_model_uri

        return resolve_model_uri(str(artifact))
    path = Path(artifact)
    if path.is_dir():
        best = path / "best.pt"
        if not best.is_file():
            raise DetopsError(f"{path}: a directory without best.pt is not a run directory")
        return best
    if not path.is_file():
        raise DetopsError(f"artifact not found: {path}")
    return path


@dataclass(frozen=True)
class ExportSource:
    """What ``detops export SOURCE`` was given, resolved.

    Attributes:
        variant: the variant to build.
        path: the checkpoint or weight file, ``None`` for a bare variant name (random weights).
        kind: ``"checkpoint"`` (training checkpoint), ``"weights"`` (detops weight file) or ``"variant"``.
    """

    variant: str
    path: Path | None
    kind: str


def resolve_source(source: str | os.PathLike[str]) -> ExportSource:
    """A checkpoint (``best.pt``/``last.pt``), run directory (its ``best.pt``), detops weight file, or bare
    variant name, as an ``ExportSource``; one-line ``DetopsError`` for anything else."""
    import models
    from detops.weights import WEIGHTS_FORMAT, load_checkpoint_file

    text = str(source)
    if text.startswith("models:"):  # a registry URI exports from its version's training checkpoint
        from detops.registry.uri import resolve_model_uri

        source = resolve_model_uri(text, want="checkpoint")
    if text in models.VARIANT_TABLE and not Path(text).exists():
        return ExportSource(variant=text, path=None, kind="variant")
    path = Path(source)
    if not path.exists():
        raise DetopsError(
            f"export source {text!r} is neither a file, a run directory nor a variant "
            f"(variants: {', '.join(models.VARIANTS)})"
        )
    path = resolve_artifact(path)
    if artifact_kind(path) != "checkpoint":
        raise DetopsError(f"{path}: export needs a checkpoint, weight file, run directory or variant name")
    obj = load_checkpoint_file(path)
    variant = obj.get("variant")
    if not isinstance(variant, str) or "model" not in obj:
        raise DetopsError(f"{path}: not a detops checkpoint or weight file (no 'variant'/'model' fields)")
    try:
        models.get_variant(variant)
    except ValueError as exc:
        raise DetopsError(f"{path}: field 'variant': {exc}") from None
    kind = "weights" if obj.get("format") == WEIGHTS_FORMAT else "checkpoint"
    return ExportSource(variant=variant, path=path, kind=kind)


def default_classes(num_classes: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Placeholder names ``class_0..`` and ids ``1..C`` for weights that carry no class list."""
    return tuple(f"class_{i}" for i in range(num_classes)), tuple(range(1, num_classes + 1))


def meta_from_checkpoint(
    ckpt: dict[str, Any], *, sha256: str = "", input_size: int | None = None
) -> ArtifactMeta:
    """``ArtifactMeta`` of a loaded checkpoint or weight-file dict (``variant``, ``num_classes``, and when
    present ``class_names``, ``category_ids``, ``img_size``); ``input_size`` overrides the size."""
    import models
    from detops import __version__

    variant = models.get_variant(str(ckpt["variant"]))
    num_classes = int(ckpt.get("num_classes", 80))
    names, ids = default_classes(num_classes)
    if ckpt.get("class_names") is not None and ckpt.get("category_ids") is not None:
        names = tuple(str(n) for n in ckpt["class_names"])
        ids = tuple(int(c) for c in ckpt["category_ids"])
    return ArtifactMeta(
        variant=variant.name,
        family=variant.family,
        class_names=names,
        category_ids=ids,
        input_size=int(input_size if input_size is not None else ckpt.get("img_size") or variant.input_size),
        pixel_scale=float(variant.pixel_scale),
        source_sha256=sha256,
        detops_version=__version__,
    )


def write_onnx_metadata(path: str | os.PathLike[str], meta: ArtifactMeta) -> None:
    """Set ``meta`` into the ``metadata_props`` of the ONNX file at ``path`` in place (other keys kept)."""
    from detops.export import set_onnx_metadata

    set_onnx_metadata(Path(path), meta.to_metadata_props())


def read_onnx_metadata(path: str | os.PathLike[str]) -> ArtifactMeta:
    """``ArtifactMeta`` stored in an ONNX file by ``write_onnx_metadata``; one-line errors otherwise."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors have no common base class
        raise DetopsError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    return ArtifactMeta.from_metadata_props({p.key: p.value for p in model.metadata_props}, source=str(path))


def onnx_input_names(path: str | os.PathLike[str]) -> list[str]:
    """The graph inputs of an ONNX file that are fed at run time (initializers excluded), in order."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]
