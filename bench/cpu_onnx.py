"""The CPU ONNX column: every variant exported at 640 and timed on ONNX Runtime and OpenVINO.

    cd <repo> && .venv/bin/python -m bench.cpu_onnx                       # all eight, both backends
    .venv/bin/python -m bench.cpu_onnx --variants damo_yolo_t rtdetrv2_s --iters 20 --json out.json

Each variant is exported with random weights (latency does not depend on them) through
``detops export`` (parity check included) with a fixed batch of 1, then timed with the profiler's
one method (``detops.deploy.profile.time_runs``): ``--warmup`` untimed runs, then ``--iters`` timed
``runner.infer`` calls on a prepared batch (model only; no pre/post-processing), at ``--threads``
intra-op threads (default: this machine's logical core count).

GFLOP/s achieved = the variant's GFLOPs at 640 (2 x multiply-adds, as ``detops models list``) divided
by the median time; "of peak" divides that by this machine's sustained fp32 matmul rate measured in
the same run right before that variant (the better of torch and numpy 2048^3 sgemm at the same thread
count, median of repeated runs), so that both figures see the same contention on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import models
from detops.deploy.profile import environment, synthetic_images, time_runs

BACKENDS = ("ort", "openvino")
PUBLISHED = tuple(name for name, row in models.VARIANT_TABLE.items() if row.published is not None)


def sgemm_gflops(*, threads: int, n: int = 2048, seconds: float = 3.0) -> dict[str, float]:
    """Sustained fp32 matmul rate (GFLOP/s, median over runs spanning ``seconds``) with torch and numpy."""
    import torch

    torch.set_num_threads(threads)
    a = torch.rand(n, n)
    b = torch.rand(n, n)
    flops = 2.0 * n**3
    torch_stats = time_runs(lambda: torch.mm(a, b), clock=time.perf_counter, warmup=2, seconds=seconds)
    an, bn = a.numpy(), b.numpy()
    numpy_stats = time_runs(lambda: an @ bn, clock=time.perf_counter, warmup=2, seconds=seconds)
    return {
        "torch": flops / (torch_stats.median_ms / 1000.0) / 1e9,
        "numpy": flops / (numpy_stats.median_ms / 1000.0) / 1e9,
    }


def measure(
    variant: str, *, workdir: Path, size: int, threads: int, warmup: int, iters: int, dynamic: bool
) -> list[dict[str, Any]]:
    """Export ``variant`` and time it on each backend; one row per backend."""
    from detops.deploy.exporting import export_artifact
    from detops.deploy.runners.base import load_runner

    row = models.get_variant(variant)
    model = models.build_model(variant, num_classes=80)
    gflops = models.family_module(variant).count_gflops(model, image_size=size)
    del model
    t0 = time.perf_counter()
    report, _ = export_artifact(
        variant, out=workdir / f"{variant}_{size}.onnx", image_size=size, batch=None if dynamic else 1
    )
    export_s = time.perf_counter() - t0
    images = synthetic_images(1, orig_size=(size, size))
    rows = []
    for backend in BACKENDS:
        runner = load_runner(report.path, backend=backend, threads=threads)
        batch = runner.prepare(images)
        stats = time_runs(
            lambda r=runner, b=batch: r.infer(b), clock=time.perf_counter, warmup=warmup, iters=iters
        )
        rows.append(
            {
                "variant": variant,
                "family": row.family,
                "backend": backend,
                "gflops": gflops,
                "median_ms": stats.median_ms,
                "p90_ms": stats.p90_ms,
                "n": stats.n,
                "achieved_gflops_s": gflops / (stats.median_ms / 1000.0),
                "export_s": export_s,
                "parity": report.max_rel_error,
            }
        )
    return rows


def main() -> None:
    """Parse arguments, measure the matmul peak and every variant, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list(PUBLISHED))
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--dynamic-batch", action="store_true", help="export with a dynamic batch axis")
    parser.add_argument("--json", type=Path, default=None, help="also write rows and environment here")
    args = parser.parse_args()

    load = os.getloadavg()
    peaks: list[dict[str, float]] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cpu_onnx_") as tmp:
        for variant in args.variants:
            peaks.append(sgemm_gflops(threads=args.threads, seconds=1.5))
            measured = measure(
                variant,
                workdir=Path(tmp),
                size=args.size,
                threads=args.threads,
                warmup=args.warmup,
                iters=args.iters,
                dynamic=args.dynamic_batch,
            )
            for r in measured:
                r["sgemm_gflops_s"] = max(peaks[-1].values())
            rows += measured
            last = rows[-2:]
            print(
                f"{variant}: " + ", ".join(f"{r['backend']} {r['median_ms']:.1f} ms" for r in last),
                flush=True,
            )
    load_after = os.getloadavg()

    from rich.console import Console
    from rich.table import Table

    env = environment(threads=args.threads)
    table = Table(
        title=(
            f"CPU ONNX, {args.size} px, batch 1, {args.threads} threads, model only "
            f"({env['cpu_model']}; sgemm {min(r['sgemm_gflops_s'] for r in rows):.1f}-"
            f"{max(r['sgemm_gflops_s'] for r in rows):.1f} GFLOP/s; "
            f"load average {load[0]:.1f} before, {load_after[0]:.1f} after)"
        )
    )
    for col in ("variant", "backend", "median ms", "p90 ms", "GFLOPs", "GFLOP/s", "sgemm GFLOP/s", "of peak"):
        table.add_column(col, justify="left" if col in ("variant", "backend") else "right")
    for r in rows:
        table.add_row(
            r["variant"],
            r["backend"],
            f"{r['median_ms']:.1f}",
            f"{r['p90_ms']:.1f}",
            f"{r['gflops']:.1f}",
            f"{r['achieved_gflops_s']:.1f}",
            f"{r['sgemm_gflops_s']:.1f}",
            f"{r['achieved_gflops_s'] / r['sgemm_gflops_s']:.0%}",
        )
    Console(width=160).print(table)
    if args.json is not None:
        from detops.fileio import write_json

        write_json(
            args.json,
            {
                "rows": rows,
                "sgemm_gflops_s": peaks,
                "load_average": [load, load_after],
                "environment": env,
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            },
        )


if __name__ == "__main__":
    main()
