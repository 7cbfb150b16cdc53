"""`detops demo`: the main job on embedded defaults."""

from __future__ import annotations

import logging
import time

import typer


def register(app: typer.Typer) -> None:
    """Add the `demo` command to the root app."""
    app.command("demo")(demo_cmd)


def demo_cmd(
    epochs: int = typer.Option(
        None, help="Training epochs for every variant (default: 8 DAMO-YOLO-T, 3 RT-DETRv2-S)."
    ),
    img_size: int = typer.Option(
        None, help="Training and evaluation input size (default: 160 DAMO-YOLO-T, 192 RT-DETRv2-S)."
    ),
    flow: bool = typer.Option(
        True,
        "--flow/--no-flow",
        help="Run the steps as the Prefect retrain flow (default) or directly, without Prefect.",
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Also print debug lines, progress bars (with --no-flow) and Prefect's own messages.",
    ),
) -> None:
    """Synthesise, validate and version a dataset; train, deploy, register and promote damo_yolo_t and rtdetrv2_s through the Prefect retrain flow; print the comparison report. The full log goes to .detops/logs/."""
    from detops.cli import _validate as check
    from detops.demo import DEMO_RUNS, DemoConfig, closing_text, run_demo
    from detops.logs import log_path, setup_logging
    from detops.settings import get_settings

    if epochs is not None:
        check.at_least(epochs, "--epochs", 1)
    for variant, _ in DEMO_RUNS:
        if img_size is not None:
            check.input_size(check.variant(variant), img_size, training=True)
    runs = DEMO_RUNS if epochs is None else tuple((variant, epochs) for variant, _ in DEMO_RUNS)
    settings = get_settings()
    log_file = setup_logging(verbose=verbose, log_file=log_path(settings.home, "demo"))
    config = DemoConfig(runs=runs, img_size=img_size, progress=verbose)
    started = time.perf_counter()
    if flow:
        from detops.cli.demo_flow import run_demo_flow

        result = run_demo_flow(settings=settings, config=config)
    else:
        result = run_demo(settings=settings, config=config)
    total = time.perf_counter() - started
    minutes, seconds = divmod(round(total), 60)
    # through the logger: on the console and in the log file
    log = logging.getLogger("detops.demo")
    log.info("\n%s", closing_text(result, total_s=total, log_file=log_file))
    log.info("(demo finished in %d min %02d s)", minutes, seconds)
