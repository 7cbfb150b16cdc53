"""Tiny checkpoints of both families on the synthetic dataset's classes, and their ONNX exports.

Session-scoped (exports cost seconds): tests must not modify these files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

SIZE = 64
FAMILIES = ("damo_yolo_tiny", "rtdetrv2_tiny")


def make_checkpoint(path: Path, variant: str, *, data_root: Path, size: int = SIZE, seed: int = 0) -> Path:
    """A detops checkpoint of ``variant`` with seeded random weights and ``data_root``'s classes.

    DAMO-YOLO's class-score priors are reset to 0 (scores around 0.5 instead of 0.01) so that random
    weights still produce detections above the post-processor's threshold.
    """
    import models
    from detops.engine.checkpoint import save_checkpoint

    cats = sorted(
        json.loads((data_root / "annotations" / "instances_val.json").read_text())["categories"],
        key=lambda c: c["id"],
    )
    torch.manual_seed(seed)
    model = models.build_model(variant, num_classes=len(cats))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("head.gfl_cls") and name.endswith("bias"):
                param.zero_()
    save_checkpoint(
        path,
        {
            "variant": variant,
            "num_classes": len(cats),
            "class_names": [c["name"] for c in cats],
            "category_ids": [int(c["id"]) for c in cats],
            "img_size": size,
            "model": model.state_dict(),
            "ema": None,
        },
    )
    return path


@pytest.fixture
def checkpoint_factory():
    """``make_checkpoint`` as a fixture."""
    return make_checkpoint


@pytest.fixture(scope="session")
def tiny_artifacts(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """``{variant: {"checkpoint": run_dir/best.pt, "run": run_dir, "onnx": run_dir/best.onnx}}``, the
    ONNX files made by ``detops export RUN_DIR`` (default output beside the checkpoint)."""
    from detops.cli import main

    root = tmp_path_factory.mktemp("deploy")
    out: dict[str, dict[str, Path]] = {}
    for variant in FAMILIES:
        run = root / variant
        ckpt = make_checkpoint(run / "best.pt", variant, data_root=synth_root)
        assert main(["export", str(run)]) == 0
        out[variant] = {"checkpoint": ckpt, "run": run, "onnx": run / "best.onnx"}
    return out
