"""Files in the official layouts, made here: release checkpoints (random tensors with exactly the
names, shapes and dtypes of the authors' files, tests/fixtures/checkpoints/) and a COCO 2017
directory (``annotations/instances_val2017.json`` + ``val2017/``, COCO's 80 categories)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"


def official_state_dict(variant: str, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the official names, shapes and dtypes, well-conditioned (positive
    BN variances, norm scales near 1, small weights) so that a model loading them gives finite
    outputs."""
    spec = json.loads((FIXTURES / f"{variant}.json").read_text())["tensors"]
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, meta in spec.items():
        shape, dtype = meta["shape"], getattr(torch, meta["dtype"])
        if dtype == torch.bool:
            state[key] = torch.rand(shape, generator=gen) > 0.05
        elif not dtype.is_floating_point:
            state[key] = torch.randint(0, 1000, shape, generator=gen, dtype=dtype)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm3.weight")):
            state[key] = torch.rand(shape, generator=gen) * 0.5 + 0.75
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.02
    return state


def release_payload(variant: str, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``state`` wrapped as the family's release file holds it (DAMO-YOLO ``{'model'}``, RT-DETRv2
    ``{'ema': {'module'}}``)."""
    return {"ema": {"module": state}} if variant.startswith("rtdetrv2") else {"model": state}


def write_release(variant: str, directory: Path, *, seed: int = 0, name: str | None = None) -> Path:
    """A release file of ``variant`` in ``directory`` under the authors' file name (or ``name``)."""
    import models

    published = models.get_variant(variant).published
    path = directory / (name or (published.release_file if published else f"{variant}.pth"))
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(release_payload(variant, official_state_dict(variant, seed=seed)), path)
    return path


def write_coco2017(root: Path, *, images: int = 3, size: int = 160, seed: int = 0) -> Path:
    """A small COCO 2017 val split in the release's layout under ``root``: synthetic images whose
    objects carry COCO category ids, and the 80 COCO categories in the annotation file."""
    from detops.data.coco_classes import COCO_IDS, COCO_NAMES
    from detops.data.synth import synthesize

    scratch = root.parent / f".{root.name}-synth"
    synthesize(scratch, train=0, val=images, size=size, seed=seed, progress=False)
    coco = json.loads((scratch / "annotations" / "instances_val.json").read_text())
    ids = {c["id"]: COCO_IDS[i] for i, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    for ann in coco["annotations"]:
        ann["category_id"] = ids[ann["category_id"]]
    coco["categories"] = [
        {"id": i, "name": n, "supercategory": "coco"} for i, n in zip(COCO_IDS, COCO_NAMES, strict=True)
    ]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(coco))
    shutil.move(str(scratch / "val"), str(root / "val2017"))
    shutil.rmtree(scratch)
    return root
