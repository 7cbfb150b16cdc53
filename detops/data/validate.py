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

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detops.data.checks import BBOX_TOLERANCE, checks
from detops.data.checks import category_ids as declared_category_ids
from detops.data.layout import CocoSplit, find_split, list_splits, load_coco_json

__all__ = ["BBOX_TOLERANCE", "Failure", "ValidationReport", "failure_table", "validate_dataset"]

DEFAULT_SAMPLE_IMAGES = 500
DOCS_SITE = "detops"
MAX_EXAMPLES = 5

log = logging.getLogger(__name__)


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
    """The GE expectations for ``table`` ("images", "annotations" or "categories"): one per row of
    ``detops.data.checks.checks``, the table training runs too."""
    import great_expectations as gx

    ex = gx.expectations
    out: list[Any] = []
    for check in checks(table, category_ids=category_ids, tolerance=tolerance):
        common: dict[str, Any] = {"column": check.column, "description": check.description}
        if check.kind == "not_null":
            out.append(ex.ExpectColumnValuesToNotBeNull(**common))
        elif check.kind == "unique":
            out.append(ex.ExpectColumnValuesToBeUnique(**common))
        elif check.kind == "in_set":
            out.append(ex.ExpectColumnValuesToBeInSet(value_set=list(check.value_set or ()), **common))
        elif check.kind == "between":
            bounds: dict[str, Any] = {}
            if check.min_value is not None:
                bounds.update(min_value=check.min_value, strict_min=check.strict_min)
            if check.max_value is not None:
                bounds["max_value"] = check.max_value
            out.append(ex.ExpectColumnValuesToBeBetween(**bounds, **common))
        else:
            raise ValueError(f"no GE expectation for check kind {check.kind!r}")
    return out


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
    from detops.data.checks import frames as build_frames

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
        tables = build_frames(
            data, file=split.annotations, image_dir=split.images, sample_images=sample_images, seed=seed
        )
        images = tables["images"]
        category_ids = declared_category_ids(tables["categories"])
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
    report = ValidationReport(
        root=found[0].root,
        success=not failures,
        failures=failures,
        docs_path=docs_path,
        counts=counts,
        seconds=time.perf_counter() - start,
    )
    sizes = ", ".join(f"{name} {c.get('images', 0)} images" for name, c in counts.items())
    if report.success:
        log.info("dataset valid: every Great Expectations check passed (%s)%s", sizes, _docs_note(docs_path))
    else:
        log.warning(
            "dataset invalid: %d expectation(s) failed (%s)%s", len(failures), sizes, _docs_note(docs_path)
        )
    return report


def _docs_note(docs_path: Path | None) -> str:
    return f"; Data Docs at {docs_path}" if docs_path else ""


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
