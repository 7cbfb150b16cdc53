"""`detops benchmark` and `detops reproduce`: the comparison table's rows without training."""

from __future__ import annotations

from pathlib import Path

import typer

from detops.errors import DetopsError


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise DetopsError(f"{option}: empty list")
    return names


def benchmark_cmd(
    variants: str = typer.Option(
        "all", "--variants", help="Comma-separated variants, or all (the table's eight)."
    ),
    img_size: int = typer.Option(640, "--img-size", help="Square input size of the exported graphs."),
    backends: str = typer.Option("ort,openvino,tensorrt", "--backends", help="Backends to profile on."),
    seconds: float = typer.Option(1.5, "--seconds", help="Timed seconds per profile."),
    version: int = typer.Option(
        None,
        "--version",
        help="Benchmark this registry version of the one variant in --variants instead: its TensorRT "
        "latency and engine mAP are tagged onto it (run on the GPU machine).",
    ),
    data: Path = typer.Option(
        None, "--data", help="With --version: a directory holding the version's dataset, if on no DVC remote."
    ),
) -> None:
    """Latency-only rows: build each variant untrained, export it, profile it on every available
    backend and record the figures (labelled untrained, latency only) for the report. Trains and
    registers nothing. With --version: measure that registry version here instead (what the t4
    pool's benchmark flow runs)."""
    from detops.logs import setup_logging
    from detops.registry.latency_only import benchmark_untrained, resolve_variants
    from detops.settings import get_settings

    if not seconds > 0:
        raise DetopsError(f"--seconds must be > 0, got {seconds}")
    if data is not None and version is None:
        raise DetopsError("--data goes with --version (the dataset of a registry version)")
    if version is not None:
        _benchmark_version(variants, version, backends=backends, seconds=seconds, data=data)
        return
    names = resolve_variants(_names(variants, "--variants"))
    settings = get_settings()
    setup_logging()
    typer.echo(
        f"{'variant':<14} {'px':>4} {'params M':>9} {'GFLOPs':>7} {'ORT ms':>8} {'OpenVINO ms':>12}  TensorRT"
    )
    entries = benchmark_untrained(
        names,
        img_size=img_size,
        backends=_names(backends, "--backends"),
        seconds=seconds,
        settings=settings,
        on_entry=lambda e: typer.echo(
            f"{e.variant:<14} {e.img_size:>4} {e.params / 1e6:>9.2f} {e.gflops:>7.1f} "
            f"{e.latency_ms.get('ort', float('nan')):>8.2f} {e.latency_ms.get('openvino', float('nan')):>12.2f}  "
            + (
                f"{e.latency_ms['tensorrt']:.2f} ms"
                if "tensorrt" in e.latency_ms
                else ("unavailable" if "tensorrt" in e.unavailable else "not asked")
            )
        ),
    )
    why = next((e.unavailable["tensorrt"] for e in entries if "tensorrt" in e.unavailable), None)
    if why:
        typer.echo(f"TensorRT: {why}")
    typer.echo("recorded as latency-only entries (untrained); see them with `detops report`")


def _benchmark_version(
    variants: str, version: int, *, backends: str, seconds: float, data: Path | None
) -> None:
    from detops.cli import _validate as check
    from detops.logs import setup_logging
    from detops.registry.benchmark import benchmark_rows, benchmark_version
    from detops.registry.client import model_name
    from detops.settings import get_settings

    if version < 1:
        raise DetopsError(f"--version must be >= 1, got {version}")
    names = _names(variants, "--variants")
    if len(names) != 1:
        raise DetopsError(f"--version needs exactly one variant in --variants, got {variants!r}")
    check.variant(names[0], "--variants")
    settings = get_settings()
    setup_logging()
    result = benchmark_version(
        names[0],
        version,
        backends=_names(backends, "--backends"),
        seconds=seconds,
        data=data,
        settings=settings,
    )
    typer.echo(f"{model_name(result.variant)} version {result.version}")
    for row in benchmark_rows([result.as_dict()]):
        ms = "" if row["median_ms"] is None else f"{row['median_ms']:.2f} ms"
        ckpt = "unknown" if row["map_checkpoint"] is None else f"{row['map_checkpoint']:.4f}"
        figure = "" if row["map"] is None else f"mAP {row['map']:.4f} (checkpoint {ckpt})"
        status = "" if row["status"] == "measured" else row["status"]
        typer.echo(f"  {row['backend']:<9} {ms:>10}  {figure}{status}".rstrip())
    if result.tags:
        typer.echo(f"tagged: {', '.join(sorted(result.tags))}")


def reproduce_cmd(
    coco: Path = typer.Option(
        ..., "--coco", help="COCO 2017 root (annotations/instances_val2017.json, val2017/)."
    ),
    weights_dir: Path = typer.Option(
        ..., "--weights-dir", help="Directory holding the authors' release files."
    ),
    variants: str = typer.Option("all", "--variants", help="Comma-separated variants, or all."),
    backends: str = typer.Option("ort,openvino,tensorrt", "--backends", help="Backends to measure."),
    profile_seconds: float = typer.Option(1.5, "--profile-seconds", help="Timed seconds per profile."),
) -> None:
    """Import every release file found in --weights-dir, evaluate it on COCO val2017 at 640 (PyTorch
    and each artifact), export, profile, register (TensorRT on the t4 pool when it has a worker) and
    write the report with the published figure beside each measured one."""
    import os

    from detops.logs import setup_logging
    from detops.registry.latency_only import check_backends, resolve_variants
    from detops.registry.reproduce import check_coco2017, release_files
    from detops.settings import get_settings

    if not profile_seconds > 0:
        raise DetopsError(f"--profile-seconds must be > 0, got {profile_seconds}")
    names = resolve_variants(_names(variants, "--variants"))
    wanted = check_backends(_names(backends, "--backends"))
    check_coco2017(coco)  # refused here, before Prefect starts
    found = release_files(weights_dir, names)
    typer.echo("release files: " + ", ".join(f"{v} <- {p.name}" for v, p in found.items()))
    settings = get_settings()
    setup_logging()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if settings.prefect_api_url:
        os.environ.setdefault("PREFECT_API_URL", settings.prefect_api_url)
    from flows.reproduce import reproduce

    state = reproduce(
        coco=str(coco),
        weights_dir=str(weights_dir),
        variants=list(found),
        backends=tuple(wanted),
        profile_seconds=profile_seconds,
        return_state=True,
    )
    result = state.result()
    for reg in result["registered"]:
        t = reg["tags"]
        typer.echo(
            f"registered {reg['model']} v{reg['version']} (official {t['detops.source_file']}): mAP PyTorch "
            f"{float(t['detops.map.checkpoint']):.4f}, "
            + ", ".join(f"{b} {float(t['detops.map.' + b]):.4f}" for b in wanted if "detops.map." + b in t)
        )
    typer.echo(result["report"]["markdown"])
    if not result["tensorrt"]["dispatched"]:
        typer.echo(str(result["tensorrt"]["detail"]))
    typer.echo("wrote " + ", ".join(result["report"]["files"]))


def register(app: typer.Typer) -> None:
    """Add the comparison commands to the top-level app."""
    app.command("benchmark")(benchmark_cmd)
    app.command("reproduce")(reproduce_cmd)
