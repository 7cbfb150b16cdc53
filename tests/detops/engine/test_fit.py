"""fit(): resume reproduces an uninterrupted run exactly; run-directory outputs; fine-tuning from a
weight file with another class count; one-line errors for bad data roots and checkpoints."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import models
from detops.cli import main
from detops.data.transforms import Compose
from detops.engine import fit as fit_module
from detops.engine.callbacks import StepLossRecorder, StopTraining
from detops.engine.checkpoint import load_matching, read_checkpoint
from detops.engine.fit import fit, resume
from detops.engine.inference import evaluate_checkpoint
from detops.engine.recipes import train_pipeline
from detops.errors import DetopsError

# Tiny and fast: 8 train images at 64 px, batch 4 -> 2 steps per epoch, augmentation on (so the
# per-sample augmentation streams and RNG restore are exercised).
COMMON = {"img_size": 64, "batch_size": 4, "workers": 0}
OVERRIDES = {"progress": False, "warmup_iters": 1}


class _SnapshotAfter:
    """Copy the run directory ``src`` to ``dst`` at the end of epoch ``epoch`` (1-based)."""

    def __init__(self, epoch: int, src: Path, dst: Path) -> None:
        self.epoch, self.src, self.dst = epoch, src, dst

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            shutil.copytree(self.src, self.dst)


class _StopAfter:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise StopTraining


class _GlobalRNGJitter:
    """A test augmentation that draws from the *global* torch, numpy and python RNGs (the family
    pipelines draw only from their per-sample generators): it shifts the image by the draws. Run in
    data-loader workers, it needs their RNGs seeded by (seed, epoch) alone to resume exactly."""

    def __call__(self, sample: dict, *, rng: np.random.Generator, dataset: object = None) -> dict:
        shift = float(torch.rand(())) + float(np.random.uniform()) + random.uniform(0.0, 1.0)
        return {**sample, "image": sample["image"] + 0.05 * shift}


def _noisy_model(build: Any) -> Any:
    """``models.build_model`` whose models, in training, add noise drawn from the main process's
    global torch RNG to each input batch (a batch-level augmentation, as dropout would draw)."""

    def build_noisy(name: str, **kwargs: Any) -> torch.nn.Module:
        model = build(name, **kwargs)

        def add_noise(module: torch.nn.Module, args: tuple) -> tuple | None:
            if not module.training:
                return None
            return (args[0] + 0.02 * torch.rand_like(args[0]), *args[1:])

        model.register_forward_pre_hook(add_noise)
        return model

    return build_noisy


def _jittered_pipeline(variant: models.Variant, *, size: int, augment: bool) -> Compose:
    pipeline = train_pipeline(variant, size=size, augment=augment)
    return Compose([*pipeline.transforms, _GlobalRNGJitter()])


@pytest.mark.parametrize("name", ["damo_yolo_tiny", "rtdetrv2_tiny"])
def test_resume_reproduces_uninterrupted_run(
    name: str, synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two data-loader workers, the family's augmentation plus a global-RNG one in the workers and
    a global-RNG batch noise in the main process, evaluation after every epoch (so before each
    checkpoint): resuming the run directory as it was after epoch 1 gives bit-identical step
    losses, weights, EMA, val metrics, ``best_map`` / ``best_epoch`` and ``best.pt``."""
    monkeypatch.setattr(fit_module, "train_pipeline", _jittered_pipeline)
    monkeypatch.setattr(models, "build_model", _noisy_model(models.build_model))
    common = {**COMMON, "workers": 2}
    overrides = {**OVERRIDES, "eval_interval": 1, "no_aug_epochs": 0}
    full = StepLossRecorder()
    # The run directory as a crash right after epoch 1 would leave it (checkpoints, metrics.jsonl).
    snapshot = _SnapshotAfter(1, tmp_path / "full", tmp_path / "part")
    full_summary = fit(
        name, data_root=synth_root, epochs=2, out_dir=tmp_path / "full", callbacks=[full, snapshot],
        overrides=overrides, **common,
    )  # fmt: skip
    assert read_checkpoint(tmp_path / "part" / "last.pt")["epoch"] == 0
    resumed = StepLossRecorder()
    summary = resume(tmp_path / "part", callbacks=[resumed])
    full_second = [s for s in full.steps if s["epoch"] == 1]
    assert len(resumed.steps) == len(full_second) == 2
    # Exact: same model, EMA, optimiser, schedule, RNG and data order.
    assert [s["loss"] for s in resumed.steps] == [s["loss"] for s in full_second]
    for kind in ("last", "best"):
        a = read_checkpoint(tmp_path / "full" / f"{kind}.pt")
        b = read_checkpoint(tmp_path / "part" / f"{kind}.pt")
        assert (b["epoch"], b["best_epoch"], b["best_map"]) == (a["epoch"], a["best_epoch"], a["best_map"])
        for key, value in a["model"].items():
            torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=f"{kind} {key}")
        for key, value in a["ema"]["module"].items():
            torch.testing.assert_close(b["ema"]["module"][key], value, rtol=0, atol=0, msg=f"{kind} {key}")
    assert (summary["best_map"], summary["best_epoch"]) == (
        full_summary["best_map"],
        full_summary["best_epoch"],
    )
    history = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    full_history = full_summary["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all("val/AP" in h for h in history)
    for mine, theirs in zip(history, full_history, strict=True):
        assert {k: v for k, v in mine.items() if k != "time_s"} == {
            k: v for k, v in theirs.items() if k != "time_s"
        }
    assert summary["epochs"] == 2 and len(summary["history"]) == 2


def test_run_dir_outputs_and_checkpoint_eval(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # Planned for 2 epochs, stopped by a callback after the first: StopTraining ends the run cleanly.
    summary = fit(
        "damo_yolo_tiny", data_root=synth_root, epochs=2, out_dir=out, overrides=OVERRIDES,
        callbacks=[_StopAfter(1)], **COMMON,
    )  # fmt: skip
    assert len(summary["history"]) == 1 and read_checkpoint(out / "last.pt")["epoch"] == 0
    for name in ("config.json", "metrics.jsonl", "summary.json", "last.pt", "best.pt"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert (
        config["variant"] == "damo_yolo_tiny"
        and config["img_size"] == 64
        and config["recipe"]["optimizer"] == "sgd"
    )
    saved = json.loads((out / "summary.json").read_text())
    assert saved["best_map"] == summary["best_map"] and 0.0 <= summary["best_map"] <= 1.0
    ckpt = read_checkpoint(out / "best.pt", variant="damo_yolo_tiny")
    assert set(ckpt) >= {"model", "ema", "optimizer", "scheduler", "scaler", "rng", "category_ids", "config"}
    stats = evaluate_checkpoint(out / "best.pt", data_root=synth_root, split="val")
    assert stats["AP"] == pytest.approx(summary["final"]["val/AP"], abs=1e-9)
    # Unknown config keys fail loudly.
    with pytest.raises(DetopsError, match="unknown config key"):
        fit("damo_yolo_tiny", data_root=synth_root, epochs=1, out_dir=out, overrides={"lr_typo": 1.0})


def test_finetune_reinitialises_only_class_heads(tmp_path: Path) -> None:
    for name in ("damo_yolo_tiny", "rtdetrv2_tiny"):
        torch.manual_seed(0)
        source = models.build_model(name, num_classes=80).state_dict()
        torch.manual_seed(1)
        model = models.build_model(name, num_classes=6)
        reinit = load_matching(model, source)
        assert reinit, name
        own = model.state_dict()
        for key, value in own.items():
            if key in reinit:
                assert value.shape != source[key].shape
            else:
                torch.testing.assert_close(value, source[key], rtol=0, atol=0)


def test_finetune_from_weight_file(synth_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    torch.save(
        {
            "format": "detops.weights/1",
            "variant": "damo_yolo_tiny",
            "num_classes": 80,
            "model": models.build_model("damo_yolo_tiny", num_classes=80).state_dict(),
        },
        weights,
    )
    out = tmp_path / "ft"
    fit(
        "damo_yolo_tiny",
        data_root=synth_root,
        epochs=1,
        out_dir=out,
        weights=weights,
        overrides=OVERRIDES,
        **COMMON,
    )
    reinit = json.loads((out / "config.json").read_text())["reinitialised"]
    assert reinit and all("cls" in k for k in reinit), reinit
    # A weight file of another variant is refused with a one-line error.
    with pytest.raises(DetopsError, match="variant"):
        fit(
            "rtdetrv2_tiny",
            data_root=synth_root,
            epochs=1,
            out_dir=tmp_path / "x",
            weights=weights,
            overrides=OVERRIDES,
            **COMMON,
        )


def test_errors_are_one_line(synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DetopsError, match="does not exist"):
        fit("damo_yolo_tiny", data_root=tmp_path / "missing", epochs=1, out_dir=tmp_path / "r", **COMMON)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(DetopsError, match="corrupt"):
        read_checkpoint(corrupt)
    with pytest.raises(DetopsError, match="not found"):
        read_checkpoint(tmp_path / "nothing.pt")
    code = main(["train", "damo_yolo_tiny", "--data", str(tmp_path / "missing"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    code = main(["evaluate", str(corrupt), "--data", str(synth_root)])
    err = capsys.readouterr().err
    assert code == 2 and "corrupt" in err and len(err.strip().splitlines()) == 1
    code = main(["train", "no_such_variant", "--data", str(synth_root)])
    assert code == 2 and "unknown variant" in capsys.readouterr().err
