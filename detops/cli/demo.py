"""`detops demo`: the main job on embedded defaults."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `demo` command to the root app."""
    app.command("demo")(demo_cmd)


def demo_cmd(
    epochs: int = typer.Option(
        None, help="Training epochs for every variant (default: 8 DAMO-YOLO-T, 3 RT-DETRv2-S)."
    ),
    img_size: int = typer.Option(256, help="Training and evaluation input size."),
    flow: bool = typer.Option(
        True,
        "--flow/--no-flow",
        help="Run the steps as the Prefect retrain flow (default) or directly, without Prefect.",
    ),
) -> None:
    """Synthesise, validate and version a dataset; train, deploy, register and promote damo_yolo_t and
    rtdetrv2_s through the Prefect retrain flow; print the comparison report."""
    from detops.cli import _validate as check
    from detops.demo import DEMO_RUNS, DemoConfig, run_demo
    from detops.settings import get_settings

    if epochs is not None:
        check.at_least(epochs, "--epochs", 1)
    for variant, _ in DEMO_RUNS:
        check.input_size(check.variant(variant), img_size, training=True)
    runs = DEMO_RUNS if epochs is None else tuple((variant, epochs) for variant, _ in DEMO_RUNS)
    if flow:
        from detops.cli.demo_flow import run_demo_flow

        run_demo_flow(
            settings=get_settings(), config=DemoConfig(runs=runs, img_size=img_size), echo=typer.echo
        )
        return
    run_demo(settings=get_settings(), config=DemoConfig(runs=runs, img_size=img_size), echo=typer.echo)
