"""``detops reproduce``'s inputs: a COCO 2017 directory and the authors' release files.

``check_coco2017(root)`` accepts the standard layout (``annotations/instances_val2017.json`` and
``val2017/``) and names what is missing or malformed in one line; ``release_files(dir, variants)``
finds each variant's release file by the authors' file name (``models.Published.release_file``, the
list in the README).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from detops.errors import DetopsError

VAL_ANNOTATIONS = "annotations/instances_val2017.json"
VAL_IMAGES = "val2017"


def check_coco2017(root: str | os.PathLike[str]) -> Path:
    """``root`` when it holds COCO 2017's validation split in the standard layout; ``DetopsError``
    naming the missing directory or file, or the malformed annotation file, otherwise."""
    from detops.data.layout import load_coco_json

    base = Path(root)
    if not base.is_dir():
        raise DetopsError(f"--coco {base}: directory not found")
    missing = [name for name in (VAL_ANNOTATIONS, VAL_IMAGES) if not (base / name).exists()]
    if missing:
        raise DetopsError(
            f"--coco {base}: not the COCO 2017 layout: missing {' and '.join(missing)} "
            f"(expected {VAL_ANNOTATIONS} and {VAL_IMAGES}/)"
        )
    if not (base / VAL_IMAGES).is_dir():
        raise DetopsError(f"--coco {base}: {VAL_IMAGES} is not a directory")
    load_coco_json(base / VAL_ANNOTATIONS)  # one line naming the file when it is not COCO JSON
    return base


def release_names(variants: Sequence[str]) -> dict[str, str]:
    """{variant: the authors' release file name} for ``variants`` that have one."""
    import models

    out = {}
    for name in variants:
        published = models.get_variant(name).published
        if published is not None and published.release_file:
            out[name] = published.release_file
    return out


def release_files(weights_dir: str | os.PathLike[str], variants: Sequence[str]) -> dict[str, Path]:
    """{variant: path} of the release files of ``variants`` present in ``weights_dir``, in the order
    of ``variants``; ``DetopsError`` when the directory is missing or holds none of them."""
    base = Path(weights_dir)
    if not base.is_dir():
        raise DetopsError(f"--weights-dir {base}: directory not found")
    names = release_names(variants)
    found = {v: base / n for v, n in names.items() if (base / n).is_file()}
    if not found:
        expected = ", ".join(f"{n} ({v})" for v, n in names.items())
        raise DetopsError(f"--weights-dir {base}: none of the release files is there; expected {expected}")
    return found
