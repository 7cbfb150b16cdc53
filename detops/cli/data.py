"""`detops data ...` commands: synth, validate, version, pull."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from detops.cli import _events
from detops.errors import DetopsError

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(help="Synthesise, validate and version COCO-format datasets.", no_args_is_help=True)


def _console() -> Console:
    """A rich console; wide when not on a terminal so tables in logs are not wrapped."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def _spinner(message: str) -> Any:
    """A spinner on stderr for steps that take seconds (silent when stderr is not a terminal)."""
    from rich.console import Console

    return Console(stderr=True).status(message)


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Output directory (absent, empty, or an earlier synth output)."),
    train: int = typer.Option(128, "--train", help="Number of training images."),
    val: int = typer.Option(32, "--val", help="Number of validation images."),
    size: int = typer.Option(320, "--size", help="Nominal image side in pixels (sides vary 0.8-1.25x)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
) -> None:
    """Write a synthetic COCO-format detection dataset (shapes on textured backgrounds) to OUT."""
    from rich.table import Table

    from detops.data.synth import CLASSES, synthesize

    summary = synthesize(out, train=train, val=val, size=size, seed=seed)
    table = Table(title=f"synthetic dataset in {summary.root}")
    for col in ("split", "images", "annotations", "crowd", "empty images"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, n in summary.images.items():
        table.add_row(
            split,
            str(n),
            str(summary.annotations[split]),
            str(summary.crowd[split]),
            str(summary.empty_images[split]),
        )
    console = _console()
    console.print(table)
    console.print("categories: " + ", ".join(f"{c.id}={c.name}" for c in CLASSES))


@app.command()
def validate(
    root: Path = typer.Argument(..., help="Dataset root (our layout or the COCO 2017 layout)."),
    split: list[str] = typer.Option(None, "--split", help="Split(s) to check; default: every split present."),
    sample_images: int = typer.Option(
        500, "--sample-images", help="How many images per split to decode (presence is always checked)."
    ),
    all_images: bool = typer.Option(
        False, "--all-images", help="Decode every image (overrides --sample-images)."
    ),
    docs_dir: Path = typer.Option(
        None, "--docs-dir", help="Where to write GE Data Docs; default <home>/data-docs."
    ),
) -> None:
    """Run the Great Expectations suite over ROOT; exit 0 when valid, 1 with a table of failures."""

    from detops.cli import _validate as check
    from detops.data.validate import failure_table, validate_dataset
    from detops.settings import get_settings

    check.at_least(sample_images, "--sample-images", 0)
    docs = docs_dir if docs_dir is not None else get_settings().home / "data-docs"
    with _spinner(f"validating {root} with Great Expectations"):
        report = validate_dataset(
            root, splits=split or None, sample_images=None if all_images else sample_images, docs_dir=docs
        )
    console = _console()
    for name, c in report.counts.items():
        console.print(
            f"{name}: {c['images']} images ({c['decoded']} decoded), {c['annotations']} annotations, "
            f"{c['categories']} categories"
        )
    if report.success:
        console.print(f"valid ({report.seconds:.1f} s)")
        print(f"Data Docs: {report.docs_path}")
        return
    console.print(failure_table(report))
    print(f"Data Docs: {report.docs_path}")
    # DetopsError, not typer.Exit: a check that ran and failed ends in one `error:` line, like any other
    # failure of the work.
    raise DetopsError(f"{root} failed validation: {len(report.failures)} expectation(s) failed", exit_code=1)


@app.command()
def version(
    root: Path = typer.Argument(Path("data"), help="The dataset directory; must be <project root>/data."),
    push: bool = typer.Option(False, "--push", help="Push the dataset to the configured DVC remote."),
    sample_images: int = typer.Option(500, "--sample-images", help="Images per split decoded by validation."),
    as_json: bool = typer.Option(False, "--json", help='Print {"version", "remote", "files"} as JSON only.'),
) -> None:
    """Validate ROOT, track it with DVC (data.dvc) and print its version, the DVC directory hash."""
    from detops.cli import _validate as check
    from detops.data.validate import failure_table
    from detops.data.versioning import InvalidDatasetError, version_dataset
    from detops.settings import get_settings

    check.at_least(sample_images, "--sample-images", 0)
    settings = get_settings()
    console = _console()
    try:
        with _spinner(f"validating and versioning {root}" + (" (and pushing)" if push else "")):
            result = version_dataset(
                root,
                settings=settings,
                push=push,
                sample_images=sample_images,
                docs_dir=settings.home / "data-docs",
            )
    except InvalidDatasetError as exc:
        console.print(failure_table(exc.report))
        print(f"Data Docs: {exc.report.docs_path}")
        raise
    if push:
        _events.emit_dataset_versioned(
            version=result.md5, files=result.files, remote=result.remote, api_url=settings.prefect_api_url
        )
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    print(f"dataset version: {result.md5} ({result.files} files, {result.dvc_file})")
    if push:
        print(f"pushed {result.pushed} file(s) to {settings.dvc_remote} remote {result.remote}")
    console.print(f"commit it: git add {result.dvc_file.name} && git commit -m 'data: {result.md5[:8]}'")


@app.command()
def pull(
    version: str = typer.Option(
        None,
        "--version",
        help="Pull this version (a DVC directory hash) into the dataset cache instead, and print its path.",
    ),
    out: Path = typer.Option(None, "--out", help="With --version: a new directory to put it in."),
) -> None:
    """Restore ./data from the configured DVC remote exactly as data.dvc records it; or, with --version, materialise any pushed version (default: under DETOPS_HOME/datasets/, reused when present) and print its directory."""
    from detops.data.versioning import pull_dataset, pull_version
    from detops.settings import get_settings

    settings = get_settings()
    if version is None:
        if out is not None:
            raise DetopsError("--out: needs --version (./data is restored in place)")
    else:
        with _spinner(f"pulling dataset version {version} from the {settings.dvc_remote} remote"):
            path = pull_version(version, settings=settings, out=out)
        print(path)
        return
    with _spinner(f"pulling data from the {settings.dvc_remote} remote"):
        result = pull_dataset(settings=settings)
    print(
        f"dataset version: {result.md5} ({result.files} files) restored from {settings.dvc_remote} remote {result.remote}"
    )
