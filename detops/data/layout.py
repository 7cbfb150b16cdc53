"""Find a COCO-format detection dataset under a root directory, and load its annotation JSON.

Two layouts are recognised, per split (``train`` / ``val``):

* ours (what ``detops data synth`` writes): ``annotations/instances_<split>.json`` + ``<split>/``;
* the real COCO 2017 release: ``annotations/instances_<split>2017.json`` + ``<split>2017/``.

Everything a user can get wrong here (a missing root, a missing annotation file, malformed JSON, a
JSON file that is not COCO-shaped) raises ``DetopsError`` with a one-line message naming the path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from detops.errors import DetopsError

SPLITS: tuple[str, ...] = ("train", "val")
"""Canonical split names, in the order ``list_splits`` reports them."""

COCO_KEYS: tuple[str, ...] = ("images", "annotations", "categories")
"""Top-level keys (each a list) without which a JSON file is not a COCO detection file."""

Layout = Literal["detops", "coco2017"]


@dataclass(frozen=True)
class CocoSplit:
    """One split of a COCO-format dataset on disk.

    ``name`` is the canonical split name (``"train"`` or ``"val"``); ``annotations`` the instances
    JSON file; ``images`` the directory that ``file_name`` entries are relative to; ``layout`` which of
    the two recognised layouts matched.
    """

    name: str
    root: Path
    annotations: Path
    images: Path
    layout: Layout


def _canonical(split: str) -> str:
    """``"val2017"`` -> ``"val"``; unknown names raise ``DetopsError``."""
    name = split.removesuffix("2017")
    if name not in SPLITS:
        raise DetopsError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return name


def _candidates(root: Path, name: str) -> list[CocoSplit]:
    return [
        CocoSplit(name, root, root / "annotations" / f"instances_{name}.json", root / name, "detops"),
        CocoSplit(
            name,
            root,
            root / "annotations" / f"instances_{name}2017.json",
            root / f"{name}2017",
            "coco2017",
        ),
    ]


def _check_root(root: str | os.PathLike[str]) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DetopsError(f"dataset root {path} does not exist")
    if not path.is_dir():
        raise DetopsError(f"dataset root {path} is not a directory")
    return path.resolve()


def find_split(root: str | os.PathLike[str], split: str) -> CocoSplit:
    """The split ``split`` (``train``/``val``, ``train2017``/``val2017`` accepted) under ``root``.

    Our layout wins when both are present. Raises ``DetopsError`` when the root is missing, the split's
    annotation file is missing (the message lists the paths tried), or its image directory is missing.
    """
    path = _check_root(root)
    name = _canonical(split)
    for cand in _candidates(path, name):
        if cand.annotations.is_file():
            if not cand.images.is_dir():
                raise DetopsError(
                    f"{cand.annotations} found but its image directory {cand.images} is missing"
                )
            return cand
    tried = " or ".join(str(c.annotations) for c in _candidates(path, name))
    raise DetopsError(f"no COCO annotations for split {name!r} under {path}: expected {tried}")


def list_splits(root: str | os.PathLike[str]) -> list[CocoSplit]:
    """Every split present under ``root``, in ``SPLITS`` order.

    Raises ``DetopsError`` when the root is missing or holds no recognised split at all (not a COCO
    folder); a split whose annotation file exists without its image directory is an error too.
    """
    path = _check_root(root)
    found: list[CocoSplit] = []
    for name in SPLITS:
        if any(c.annotations.is_file() for c in _candidates(path, name)):
            found.append(find_split(path, name))
    if not found:
        raise DetopsError(
            f"{path} is not a COCO-format dataset: no annotations/instances_{{train,val}}.json "
            f"nor annotations/instances_{{train,val}}2017.json"
        )
    return found


def load_coco_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a COCO instances file and check its top-level shape.

    Returns the parsed dict, with ``images``, ``annotations`` and ``categories`` guaranteed to be lists
    (field-level checks are the validation suite's job). Raises ``DetopsError`` naming the file for a
    missing file, malformed JSON (with line and column), or a top level that is not COCO-shaped.
    """
    file = Path(path)
    if not file.is_file():
        raise DetopsError(f"annotation file {file} does not exist")
    try:
        with open(file, "rb") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DetopsError(
            f"malformed JSON in {file}: line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError as exc:
        raise DetopsError(f"{file} is not UTF-8 text (byte {exc.start}): {exc.reason}") from None
    except OSError as exc:
        raise DetopsError(f"cannot read {file}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise DetopsError(
            f"{file} is not a COCO annotation file: top level is {type(data).__name__}, not an object"
        )
    missing = [k for k in COCO_KEYS if k not in data]
    if missing:
        raise DetopsError(
            f"{file} is not a COCO annotation file: missing top-level key(s) {', '.join(missing)}"
        )
    for key in COCO_KEYS:
        if not isinstance(data[key], list):
            raise DetopsError(
                f"{file} is not a COCO annotation file: {key!r} is {type(data[key]).__name__}, not a list"
            )
    return data
