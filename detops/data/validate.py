"""The dataset validation suite (Great Expectations 1.x) and its report.

Per split, three pandas frames (``validate_frames``) are checked by three expectation suites in an
ephemeral GE context: images (ids present and unique, positive sizes, file present, decodable, decoded
size equal to the declared one), annotations (ids present and unique, ``image_id`` and
``category_id`` declared, bbox well-formed, finite, positive width and height, inside its image within
``tolerance`` pixels, area > 0, ``iscrowd`` in {0, 1}) and categories (ids present and unique, names).
Every expectation is a column-map expectation over a vectorised column, so COCO val2017-sized
annotations validate in seconds; image decoding is sampled (``sample_images``).

GE Data Docs (HTML) for every run are written under ``docs_dir``; ``ValidationReport.docs_path`` is
the index page.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detops.data.layout import CocoSplit, find_split, list_splits, load_coco_json

DEFAULT_SAMPLE_IMAGES = 500
BBOX_TOLERANCE = 1.0
"""Pixels a box may leave its image by (float rounding in real COCO files)."""
DOCS_SITE = "detops"
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Failure:
    """One failed expectation: where, which, how many rows and up to five example ids."""

    split: str
    table: str
    expectation: str
    column: str
    description: str
    count: int | None
    examples: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of ``validate_dataset``: ``success`` is True when no expectation failed."""

    root: Path
    success: bool
    failures: list[Failure]
    docs_path: Path | None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """split -> {"images": n, "annotations": n, "categories": n, "decoded": n}."""
    seconds: float = 0.0


def _expectations(table: str, *, category_ids: list[int], tolerance: float) -> list[Any]:
    """The GE expectations for ``table`` ("images", "annotations" or "categories")."""
    import great_expectations as gx

    ex = gx.expectations

    def present(column: str, what: str) -> Any:
        return ex.ExpectColumnValuesToNotBeNull(column=column, description=f"{what} present")

    def positive(column: str, what: str) -> Any:
        return ex.ExpectColumnValuesToBeBetween(
            column=column, min_value=0, strict_min=True, description=f"{what} > 0"
        )

    def true(column: str, what: str) -> Any:
        return ex.ExpectColumnValuesToBeInSet(column=column, value_set=[True], description=what)

    if table == "images":
        return [
            present("id", "image id (a number)"),
            present("file_name", "image file_name (a non-empty string)"),
            present("width", "image width (a number)"),
            present("height", "image height (a number)"),
            ex.ExpectColumnValuesToBeUnique(column="id", description="image ids unique"),
            positive("width", "image width"),
            positive("height", "image height"),
            true("file_present", "image file present"),
            true("decodable", "image file decodable"),
            true("size_matches", "decoded image size equals declared width/height"),
        ]
    if table == "annotations":
        return [
            present("id", "annotation id (a number)"),
            present("image_id", "annotation image_id (a number)"),
            present("category_id", "annotation category_id (a number)"),
            present("area", "annotation area (a number)"),
            present("iscrowd", "annotation iscrowd"),
            ex.ExpectColumnValuesToBeUnique(column="id", description="annotation ids unique"),
            true("image_declared", "annotation image_id declared in images"),
            ex.ExpectColumnValuesToBeInSet(
                column="category_id",
                value_set=category_ids,
                description="annotation category_id declared in categories",
            ),
            true("bbox_well_formed", "bbox is a list of 4 numbers"),
            true("bbox_finite", "bbox values finite"),
            positive("bbox_w", "bbox width"),
            positive("bbox_h", "bbox height"),
            ex.ExpectColumnValuesToBeBetween(
                column="bbox_outside_by",
                max_value=tolerance,
                description=f"bbox inside its image (tolerance {tolerance:g} px)",
            ),
            positive("area", "annotation area"),
            ex.ExpectColumnValuesToBeInSet(
                column="iscrowd", value_set=[0, 1], description="iscrowd in {0, 1}"
            ),
        ]
    if table == "categories":
        return [
            present("id", "category id (a number)"),
            present("name", "category name (a non-empty string)"),
            ex.ExpectColumnValuesToBeUnique(column="id", description="category ids unique"),
        ]
    raise ValueError(f"unknown table {table!r}")


def _context(docs_dir: Path | None) -> Any:
    """An ephemeral GE context without analytics or progress bars, with a Data Docs site if asked."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name=DOCS_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def _example(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _failures(split: str, table: str, result: Any) -> list[Failure]:
    out: list[Failure] = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        info = r.exception_info or {}
        error = info.get("exception_message") if info.get("raised_exception") else None
        examples: list[str] = []
        for row in r.result.get("partial_unexpected_index_list") or []:
            ex = _example(row.get("id") if isinstance(row, dict) else row)
            if ex not in examples:
                examples.append(ex)
        out.append(
            Failure(
                split=split,
                table=table,
                expectation=cfg.type,
                column=str(cfg.kwargs.get("column", "")),
                description=cfg.description or cfg.type,
                count=r.result.get("unexpected_count"),
                examples=tuple(examples[:MAX_EXAMPLES]),
                error=error,
            )
        )
    return out


def validate_dataset(
    root: str | Path,
    *,
    splits: list[str] | None = None,
    sample_images: int | None = DEFAULT_SAMPLE_IMAGES,
    docs_dir: str | Path | None = None,
    tolerance: float = BBOX_TOLERANCE,
    seed: int = 0,
) -> ValidationReport:
    """Validate the COCO dataset under ``root`` and return the report.

    ``splits``: split names to check (default: every split present). ``sample_images``: how many
    present images per split to decode (None: all; 0: none). ``docs_dir``: where GE Data Docs go
    (None: none are written). Raises ``DetopsError`` (one line) for a missing root, a missing or
    malformed annotation file, or a folder that is not COCO-shaped.
    """
    from detops.data.validate_frames import annotations_frame, categories_frame, images_frame

    start = time.perf_counter()
    if splits:
        # "val" and "val2017" name one split: keep it once.
        found = list({s.name: s for s in (find_split(root, name) for name in splits)}.values())
    else:
        found = list_splits(root)
    # Load and build every frame before starting GE, so bad input fails fast with a one-line error.
    frames: list[tuple[CocoSplit, dict[str, Any], list[int]]] = []
    counts: dict[str, dict[str, int]] = {}
    for split in found:
        data = load_coco_json(split.annotations)
        images = images_frame(
            data, file=split.annotations, image_dir=split.images, sample_images=sample_images, seed=seed
        )
        tables = {
            "images": images,
            "annotations": annotations_frame(data, file=split.annotations, images=images),
            "categories": categories_frame(data, file=split.annotations),
        }
        category_ids = sorted({int(v) for v in tables["categories"]["id"].dropna() if float(v).is_integer()})
        frames.append((split, tables, category_ids))
        counts[split.name] = {
            "images": len(images),
            "annotations": len(tables["annotations"]),
            "categories": len(tables["categories"]),
            "decoded": int(images["decodable"].notna().sum()),
        }

    import great_expectations as gx

    docs = Path(docs_dir).expanduser().resolve() if docs_dir is not None else None
    context = _context(docs)
    source = context.data_sources.add_pandas("coco")
    failures: list[Failure] = []
    for split, tables, category_ids in frames:
        for table, df in tables.items():
            name = f"{split.name}-{table}"
            batch = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("all")
            suite = context.suites.add(gx.ExpectationSuite(name=name))
            for expectation in _expectations(table, category_ids=category_ids, tolerance=tolerance):
                suite.add_expectation(expectation)
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )
            checkpoint = context.checkpoints.add(
                gx.Checkpoint(
                    name=name,
                    validation_definitions=[definition],
                    actions=[],
                    result_format={
                        "result_format": "SUMMARY",
                        "unexpected_index_column_names": ["id"],
                        "partial_unexpected_count": 20,
                    },
                )
            )
            result = checkpoint.run(batch_parameters={"dataframe": df})
            for run in result.run_results.values():
                failures.extend(_failures(split.name, table, run))
    docs_path: Path | None = None
    if docs is not None:
        context.build_data_docs(site_names=[DOCS_SITE])
        docs_path = docs / "index.html"
    return ValidationReport(
        root=found[0].root,
        success=not failures,
        failures=failures,
        docs_path=docs_path,
        counts=counts,
        seconds=time.perf_counter() - start,
    )


def failure_table(report: ValidationReport) -> Any:
    """A ``rich`` table of the failed expectations: split, check, expectation, count, example ids."""
    from rich.table import Table

    table = Table(title=f"failed expectations in {report.root}")
    for col in ("split", "check", "expectation", "failed", "example ids"):
        table.add_column(col, justify="right" if col == "failed" else "left")
    for f in report.failures:
        count = str(f.count) if f.count is not None else "error"
        examples = ", ".join(f.examples) if not f.error else f.error.splitlines()[0][:80]
        table.add_row(f.split, f.description, f"{f.expectation}({f.column})", count, examples)
    return table
