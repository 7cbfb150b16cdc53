"""INT8 on this CPU: fp32 vs ONNX Runtime static-quantized INT8, on ONNX Runtime and OpenVINO.

For each demo family (damo_yolo_t, rtdetrv2_s) a checkpoint trained on the demo's synthetic data is
exported to ONNX, quantized with `detops quantize`'s code (QDQ, per-channel weights, calibration on
val images, head tail kept fp32), and each of the four (precision, backend) pairs gets

* the median latency of the model alone at batch 1 (``time_runs`` on a prepared batch),
* COCO mAP 50:95 on the val split through the same runner, and the drop against fp32 on that backend,

plus the accuracy gate of the INT8 file against its checkpoint and, to show the gate bites, of a
degraded INT8 file (every layer quantized, calibrated on one image of noise) at a zero drop.

Checkpoints are cached under ``<home>/bench/int8/runs`` (trained on first use; see ``TRAIN``), so
reruns only re-export, re-quantize and re-measure. Run: ``.venv/bin/python -m bench.int8``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np

from bench._report import print_table

# variant -> (epochs, img_size, batch) of the cached training run (demo data: 128 train / 32 val,
# seed 0). The tiny rows are for a quick smoke run (--variants damo_yolo_tiny rtdetrv2_tiny).
TRAIN = {
    "damo_yolo_t": (10, 256, 8),
    "rtdetrv2_s": (3, 256, 8),
    "damo_yolo_tiny": (1, 64, 8),
    "rtdetrv2_tiny": (1, 64, 8),
}
DEFAULT_VARIANTS = ["damo_yolo_t", "rtdetrv2_s"]


def cpu_features() -> str:
    """VNNI / AMX flags of this CPU (lscpu) and OpenVINO's CPU optimisation capabilities."""
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    found = sorted(set(re.findall(r"avx512_vnni|avx_vnni|amx[a-z_0-9]*", flags)))
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return f"cpu flags: {', '.join(found) or 'no VNNI/AMX'}; OpenVINO CPU capabilities: {', '.join(caps)}"


def checkpoint(home: Path, variant: str, data: Path) -> Path:
    """The cached best checkpoint of ``variant``, training it first when absent."""
    run = home / "runs" / variant
    best = run / "best.pt"
    if not best.is_file():
        from detops.engine.fit import fit

        epochs, size, batch = TRAIN[variant]
        print(
            f"training {variant}: {epochs} epochs at {size} px, batch {batch}, into {run} (cached for reruns)"
        )
        fit(
            variant,
            data_root=data,
            epochs=epochs,
            out_dir=run,
            img_size=size,
            batch_size=batch,
            workers=0,
            seed=0,
        )
    return best


def median_ms(path: Path, backend: str, *, iters: int, threads: int | None) -> float:
    """Median model-only latency (ms) at batch 1."""
    from detops.deploy import load_runner
    from detops.deploy.profile import synthetic_images, time_runs

    runner = load_runner(path, backend=backend, threads=threads)
    prepared = runner.prepare(synthetic_images(1, orig_size=(320, 320), seed=0))
    stats = time_runs(lambda: runner.infer(prepared), clock=time.perf_counter, warmup=5, iters=iters, batch=1)
    return float(stats.median_ms)


def main() -> None:
    """Build, measure and print the fp32-vs-INT8 table of both families."""
    from detops.data.synth import synthesize
    from detops.deploy.artifact import onnx_input_names, read_onnx_metadata
    from detops.deploy.calibration import calibration_samples
    from detops.deploy.evaluate import evaluate_artifact
    from detops.deploy.exporting import export_artifact
    from detops.deploy.quantize import quantize_onnx
    from detops.registry.gates import gate_accuracy_drop
    from detops.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS, choices=list(TRAIN))
    parser.add_argument("--calib-images", type=int, default=32)
    parser.add_argument("--method", default="minmax", choices=("minmax", "entropy", "percentile"))
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--latency-only",
        nargs="*",
        default=[],
        choices=list(TRAIN),
        help="Variants timed from random weights at 256 px (no training, no mAP): fp32 vs INT8 speed only.",
    )
    args = parser.parse_args()

    home = Path(get_settings().home) / "bench" / "int8"
    data = home / "data"
    if not (data / "annotations").exists():
        synthesize(data, train=128, val=32, size=320, seed=0, progress=False)
    rows: list[tuple[str, str]] = [("cpu", cpu_features())]
    for variant in args.variants:
        best = checkpoint(home, variant, data)
        fp32 = home / f"{variant}.fp32.onnx"
        export_artifact(best, out=fp32)
        meta = read_onnx_metadata(fp32)
        samples = calibration_samples(
            data, meta=meta, input_names=onnx_input_names(fp32), n=args.calib_images
        )
        t0 = time.perf_counter()
        report = quantize_onnx(
            fp32, calib_samples=samples, out=home / f"{variant}.int8.onnx", method=args.method
        )
        rows.append(
            (
                f"{variant} quantize",
                f"{time.perf_counter() - t0:.0f} s, {args.method} on {len(samples)} val images, "
                f"{report.quantized_nodes} quantized tensors, fp32 kept: {', '.join(report.excluded_weight_layers)}",
            )
        )
        ref_ap: float | None = None
        for backend in ("ort", "openvino"):
            figures: dict[str, tuple[float, float]] = {}
            for precision, path in (("fp32", fp32), ("int8", report.path)):
                ms = median_ms(path, backend, iters=args.iters, threads=args.threads)
                stats = evaluate_artifact(
                    path, backend=backend, data_root=data, reference=best if ref_ap is None else None
                )
                if ref_ap is None:
                    ref_ap = float(stats["reference"]["AP"])
                figures[precision] = (ms, float(stats["AP"]))
            (ms32, ap32), (ms8, ap8) = figures["fp32"], figures["int8"]
            gate = gate_accuracy_drop(ap8, ref_ap, 0.01)
            rows.append(
                (
                    f"{variant} {backend} batch 1",
                    f"fp32 {ms32:.1f} ms, int8 {ms8:.1f} ms ({ms32 / ms8:.2f}x); mAP fp32 {ap32:.4f}, "
                    f"int8 {ap8:.4f} (drop {100 * (ap32 - ap8):+.2f} points); gate 0.01 vs checkpoint "
                    f"{ref_ap:.4f}: {'pass' if gate.passed else 'FAIL'}",
                )
            )
        noise = [
            {k: np.random.default_rng(0).uniform(0, meta.pixel_scale, v.shape).astype(v.dtype) if k == "images" else v
             for k, v in samples[0].items()}
        ]  # fmt: skip
        bad = quantize_onnx(fp32, calib_samples=noise, out=home / f"{variant}.int8-noise.onnx", exclude=[])
        bad_ap = float(evaluate_artifact(bad.path, backend="ort", data_root=data)["AP"])
        assert ref_ap is not None
        gate = gate_accuracy_drop(bad_ap, ref_ap, 0.0)
        rows.append((f"{variant} degraded int8 (1 noise image, all layers)", f"gate 0.0: {gate.detail}"))
    for variant in args.latency_only:
        fp32 = home / f"{variant}.random.fp32.onnx"
        export_artifact(variant, out=fp32, image_size=256)
        meta = read_onnx_metadata(fp32)
        samples = calibration_samples(
            data, meta=meta, input_names=onnx_input_names(fp32), n=args.calib_images
        )
        int8 = quantize_onnx(
            fp32, calib_samples=samples, out=home / f"{variant}.random.int8.onnx", method=args.method
        )
        for backend in ("ort", "openvino"):
            ms32 = median_ms(fp32, backend, iters=args.iters, threads=args.threads)
            ms8 = median_ms(int8.path, backend, iters=args.iters, threads=args.threads)
            rows.append(
                (
                    f"{variant} {backend} batch 1 (random weights, speed only)",
                    f"fp32 {ms32:.1f} ms, int8 {ms8:.1f} ms ({ms32 / ms8:.2f}x)",
                )
            )
    load = os.getloadavg()
    rows.append(("load average (1/5/15 min)", f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"))
    print_table("INT8 vs fp32 on this CPU (ONNX Runtime static QDQ quantization)", rows)


if __name__ == "__main__":
    main()
