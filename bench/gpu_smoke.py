"""The first thing to run on a lent GPU: does training and inference of both tiny families work on CUDA,
and how fast. No CUDA step of detops had run before this script.

    cd <repo> && python -m bench.gpu_smoke                      # on the GPU machine (CUDA, AMP)
    .venv/bin/python -m bench.gpu_smoke --device cpu --steps 2 --size 320 --batch 2    # a dry run here

Per variant (default ``damo_yolo_t`` and ``rtdetrv2_s``): ``--steps`` AMP training steps (forward,
loss, backward, optimiser step of the family recipe; the first, untimed, is a warm-up) at ``--size``
px and batch ``--batch`` on random images with a few random boxes: images/s and peak device memory,
and whether every loss stayed finite; then an ONNX export at batch 1 through ``detops export`` (its
parity check against PyTorch included) and its ONNX Runtime latency on CUDA (``session.run`` with host
inputs and outputs, median of ``--iters`` after warm-up; the CPU provider when ONNX Runtime has no CUDA
provider, and the table says so). One table at the end; a failing step is a row with its error, not
the end of the run. Planned budget: under 8 minutes on one H100.
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

DEFAULT_VARIANTS = ("damo_yolo_t", "rtdetrv2_s")


def train_row(name: str, *, device: torch.device, batch: int, size: int, steps: int) -> dict[str, Any]:
    """Images/s, peak memory and loss finiteness of ``steps`` training steps (AMP on CUDA)."""
    from bench.train_throughput import measure

    row = measure(name, device=device, batch=batch, size=size, steps=steps, amp=device.type == "cuda")
    return {"images_per_s": row["images_per_s"], "peak_mem_gib": row.get("peak_mem_gib")}


def finite_step(name: str, *, device: torch.device, size: int) -> bool:
    """One training step (AMP on CUDA, with its GradScaler) on a batch of 2: True when the loss was
    finite (``train_step`` refuses a non-finite one) and the scaler did not skip the step for
    non-finite gradients (its scale would have dropped)."""
    import models
    from bench.train_throughput import _batch
    from detops.engine.loop import train_step
    from detops.engine.recipes import build_optimizer, recipe_for

    variant = models.get_variant(name)
    model = models.build_model(name, num_classes=80).to(device).train()
    criterion = models.build_criterion(name, num_classes=80).to(device)
    optimizer = build_optimizer(model, recipe_for(variant, epochs=1, iters_per_epoch=2, total_batch=2))
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    images, targets = _batch(2, size, 80, variant.pixel_scale, device, seed=1)
    before = scaler.get_scale() if amp else 1.0
    train_step(model, criterion, images, targets, optimizer, scaler=scaler, amp=amp)
    skipped = amp and scaler.get_scale() < before
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return not skipped and all(bool(torch.isfinite(g).all()) for g in grads)


def onnx_row(name: str, *, workdir: Path, size: int, iters: int) -> dict[str, Any]:
    """Export at batch 1 and time ONNX Runtime on CUDA (or CPU when it has no CUDA provider)."""
    import onnxruntime as ort

    from detops.deploy.exporting import export_artifact
    from detops.deploy.profile import synthetic_images, time_runs
    from detops.deploy.runners.base import load_runner

    t0 = time.perf_counter()
    report, _ = export_artifact(name, out=workdir / f"{name}.onnx", image_size=size, batch=1)
    export_s = time.perf_counter() - t0
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    runner = load_runner(report.path, backend="ort", device="cuda" if cuda else "cpu")
    prepared = runner.prepare(synthetic_images(1, orig_size=(size, size)))
    stats = time_runs(lambda: runner.infer(prepared), clock=time.perf_counter, warmup=10, iters=iters)
    return {
        "export_s": export_s,
        # the outputs the export's own parity check compares (an untrained model's other outputs are noise)
        "parity": max(
            (report.max_rel_error[k] for k in report.parity_outputs or list(report.max_rel_error)),
            default=float("nan"),
        ),
        "ort_provider": "CUDA" if cuda else "CPU (no CUDA provider)",
        "ort_ms": stats.median_ms,
    }


def _try(what: str, fn: Any, errors: list[str]) -> Any:
    try:
        return fn()
    except Exception as exc:  # one failing step is a row, not the end of the run
        errors.append(f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        traceback.print_exc()
        return None


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--iters", type=int, default=100)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.gpu_smoke: no CUDA device here (use --device cpu for a dry run)")
    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device {gpu}", flush=True)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_smoke_") as tmp:
        for name in args.variants:
            errors: list[str] = []
            row: dict[str, Any] = {"variant": name}
            row["finite"] = _try(
                "finite step", lambda n=name: finite_step(n, device=device, size=args.size), errors
            )
            trained = _try(
                "training",
                lambda n=name: train_row(
                    n, device=device, batch=args.batch, size=args.size, steps=args.steps
                ),
                errors,
            )
            row.update(trained or {})
            if device.type == "cuda":
                torch.cuda.empty_cache()
            row.update(
                _try(
                    "onnx",
                    lambda n=name: onnx_row(n, workdir=Path(tmp), size=args.size, iters=args.iters),
                    errors,
                )
                or {}
            )
            row["errors"] = errors
            rows.append(row)
            print(f"{name}: {row}", flush=True)
    total = time.perf_counter() - started

    def fmt(value: Any, spec: str) -> str:
        return (
            "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)
        )

    print(
        f"\ngpu_smoke on {gpu}: {args.steps} training steps per variant at {args.size} px, batch {args.batch}, "
        f"AMP {'on' if device.type == 'cuda' else 'off'}; ONNX batch 1; {total:.0f} s in all"
    )
    print(
        f"{'variant':<14}{'finite':>7}{'img/s':>9}{'peak GiB':>10}{'export s':>10}{'parity':>9}{'ORT ms':>9}  provider / errors"
    )
    for r in rows:
        print(
            f"{r['variant']:<14}{fmt(r.get('finite'), ''):>7}{fmt(r.get('images_per_s'), '.1f'):>9}"
            f"{fmt(r.get('peak_mem_gib'), '.2f'):>10}{fmt(r.get('export_s'), '.1f'):>10}"
            f"{fmt(r.get('parity'), '.1e'):>9}{fmt(r.get('ort_ms'), '.2f'):>9}  "
            f"{r.get('ort_provider', '-')}{'; ' + ' | '.join(r['errors']) if r['errors'] else ''}"
        )
    return rows


if __name__ == "__main__":
    main()
