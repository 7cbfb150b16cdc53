"""The comparison report: the seed document's table regenerated from the registry, plus a Pareto chart.

One row per variant of the table (and per other registered model): the measured figures of its
champion (the newest version when it has none; for a variant with no version, its newest
latency-only entry, see :mod:`detops.registry.latency_only`) beside the published ones, blank where
nothing was measured yet, a numbered note with the environment of every measured latency, and a
flag (Δ) on every measured figure that differs from the published one beyond ``TOLERANCES``. ``report_rows``
gathers, ``markdown_table``/``html_report`` render (pure), ``pareto_chart`` draws with matplotlib's
Agg backend, ``write_report`` writes ``report.md``, ``report.html``, ``pareto.png``, ``report.json``
and logs them to MLflow (experiment ``detops-report``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detops.registry import tags as T

BACKEND_LABELS: dict[str, str] = {
    "ort": "CPU ONNX Runtime",
    "openvino": "CPU OpenVINO",
    "tensorrt": "T4 TensorRT",
}
REPORT_EXPERIMENT = "detops-report"
COCO_VAL2017 = "coco_val2017"
"""``detops.eval_data`` of a version evaluated on COCO val2017 (``detops reproduce``)."""

TOLERANCES: dict[str, float] = {"map": 0.3, "params": 0.0, "gflops": 0.02, "latency": 0.10}
"""How far a measured figure may be from the published one before the report flags it: mAP in points
(COCO val2017 only), params by any amount, GFLOPs and T4 latency as fractions (80-class models;
latency only when measured on a T4, the published figures' hardware)."""
FLAG = "Δ"
TOLERANCE_NOTE = (
    "differs from the published figure beyond the tolerance: mAP by more than 0.3 points (measured on "
    "COCO val2017 only), params by any amount and GFLOPs by more than 2 % (80-class models), T4 "
    "TensorRT latency by more than 10 % (measured on a T4)."
)


@dataclass(frozen=True)
class Row:
    """One model of the report. Measured figures are ``None`` when not measured; published ones
    ``None`` when the authors give none. mAP is in percent (COCO convention), latencies in ms;
    ``num_classes`` is the measured model's class count (params and GFLOPs compare with the
    published 80-class figures only at 80).

    Attributes:
        model: variant name.
        source: the registry version the measured figures come from (``"v3 champion"``) or ``""``.
        size: measured input size (px); ``size_pub``: the published one (640).
        latency_env: backend -> environment summary of the measured latency.
    """

    model: str
    source: str = ""
    size: int | None = None
    size_pub: int | None = None
    map: float | None = None
    map_pub: float | None = None
    cpu_onnx_ms: float | None = None
    cpu_openvino_ms: float | None = None
    t4_trt_ms: float | None = None
    t4_trt_ms_pub: float | None = None
    params_m: float | None = None
    params_m_pub: float | None = None
    gflops: float | None = None
    gflops_pub: float | None = None
    latency_env: dict[str, dict[str, Any]] = field(default_factory=dict)
    params_exact_pub: int | None = None
    num_classes: int | None = None
    map_on_coco: bool = False
    """Whether ``map`` was measured on COCO val2017 (only then is it comparable with the paper's)."""


def row_from_tags(model: str, tags: dict[str, str] | None, *, source: str, published: Any) -> Row:
    """A report row from a version's tags (``None``: nothing measured) and a ``models.Published``."""
    tags = tags or {}
    env: dict[str, dict[str, Any]] = {}
    for backend in BACKEND_LABELS:
        value = T.get_json(tags, T.latency_env_tag(backend))
        if isinstance(value, dict) and T.get_float(tags, T.latency_tag(backend)) is not None:
            env[backend] = value
    measured_map = T.get_float(tags, T.map_tag("ort"))
    params = T.get_float(tags, T.PARAMS)
    size = T.get_float(tags, T.IMG_SIZE)
    classes = T.get_float(tags, "detops.num_classes")
    pub_t4 = None
    if published is not None:
        pub_t4 = published.t4_ms_table if published.t4_ms_table is not None else published.t4_ms_upstream
    return Row(
        model=model,
        source=source if tags else "",
        size=int(size) if size is not None else None,
        size_pub=640 if published is not None else None,
        map=None if measured_map is None else 100.0 * measured_map,
        map_pub=published.map_50_95 if published is not None else None,
        cpu_onnx_ms=T.get_float(tags, T.latency_tag("ort")),
        cpu_openvino_ms=T.get_float(tags, T.latency_tag("openvino")),
        t4_trt_ms=T.get_float(tags, T.latency_tag("tensorrt")),
        t4_trt_ms_pub=pub_t4,
        params_m=None if params is None else params / 1e6,
        params_m_pub=published.params_m if published is not None else None,
        gflops=T.get_float(tags, T.GFLOPS),
        gflops_pub=published.gflops if published is not None else None,
        latency_env=env,
        params_exact_pub=published.params_exact if published is not None else None,
        num_classes=int(classes) if classes is not None else None,
        map_on_coco=tags.get(T.EVAL_DATA) == COCO_VAL2017,
    )


def report_rows(*, client: Any = None) -> list[Row]:
    """Rows for every published variant and every other registered detops model, table order first."""
    import models
    from detops.registry.client import CHAMPION, model_name, open_registry
    from detops.registry.latency_only import latest_entry_tags

    with open_registry(client=client) as client:
        registered = set(client.model_names())
        # the seed document's rows: variants with a published comparison-table latency
        order = [name for name in models.VARIANTS if _in_table(models.get_variant(name).published)]
        order += sorted(name[len("detops-") :] for name in registered if name[len("detops-") :] not in order)
        rows = []
        for variant in order:
            name = model_name(variant)
            tags, source = None, ""
            if name in registered:
                version = client.alias_version(name, CHAMPION)
                label = "champion"
                if version is None:
                    version, label = client.latest_version(name), "latest, no champion"
                if version is not None:
                    tags, source = client.get_version(name, version).tags, f"v{version} {label}"
            if tags is None:
                tags = latest_entry_tags(variant, client=client)
                source = "untrained, latency only" if tags else ""
            published = models.get_variant(variant).published if variant in models.VARIANT_TABLE else None
            rows.append(row_from_tags(variant, tags, source=source, published=published))
        return rows


def _in_table(published: Any) -> bool:
    return published is not None and published.t4_ms_table is not None


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _pair(measured: float | None, published: float | None, fmt: str) -> str:
    """``measured (pub. X)``; blanks where missing."""
    m, p = _num(measured, fmt), _num(published, fmt)
    if p:
        return f"{m} (pub. {p})" if m else f"(pub. {p})"
    return m


HEADERS: tuple[str, ...] = (
    "Model",
    "size",
    "mAP 50-95",
    "CPU ONNX ms",
    "CPU OpenVINO ms",
    "T4 TensorRT ms",
    "params M",
    "GFLOPs",
)


def _notes(rows: Sequence[Row]) -> tuple[dict[tuple[str, str], int], list[str]]:
    """Numbered notes, one per distinct latency environment, and (model, backend) -> note number."""
    index: dict[tuple[str, str], int] = {}
    texts: list[str] = []
    seen: dict[str, int] = {}
    for row in rows:
        for backend, env in sorted(row.latency_env.items()):
            text = _env_text(backend, env)
            if text not in seen:
                texts.append(text)
                seen[text] = len(texts)
            index[(row.model, backend)] = seen[text]
    return index, texts


def _env_text(backend: str, env: dict[str, Any]) -> str:
    parts = [BACKEND_LABELS.get(backend, backend)]
    for key, label in (
        ("cpu_model", ""),
        ("cpu_cores_logical", "logical cores"),
        ("threads", "threads"),
        ("gpu_name", ""),
        ("batch", "batch"),
        ("input_size", "px"),
        ("precision", ""),
        ("platform", ""),
    ):
        value = env.get(key)
        if value is None or value == "":
            continue
        if key == "input_size":
            parts.append(f"{value} {label}")
        elif label:
            parts.append(f"{label} {value}")
        else:
            parts.append(str(value))
    return ", ".join(parts) + "; median model time"


def _on_t4(row: Row) -> bool:
    gpu = str(row.latency_env.get("tensorrt", {}).get("gpu_name") or "")
    return "T4" in gpu.upper()


def delta_flags(row: Row) -> dict[str, str]:
    """The measured figures of ``row`` that differ from the published ones beyond ``TOLERANCES``:
    ``{"map" | "params" | "gflops" | "t4_trt_ms": how far}``. Only comparable figures are judged: mAP
    measured on COCO val2017, params and GFLOPs of an 80-class model, latency measured on a T4."""
    flags: dict[str, str] = {}
    on_coco = row.map_on_coco and row.map is not None and row.map_pub is not None
    if on_coco and abs(row.map - row.map_pub) > TOLERANCES["map"] + 1e-9:  # type: ignore[operator]
        flags["map"] = f"{row.map - row.map_pub:+.1f} points"  # type: ignore[operator]
    if row.num_classes == 80 and row.params_m is not None and row.params_exact_pub is not None:
        diff = round(row.params_m * 1e6) - row.params_exact_pub
        if abs(diff) > TOLERANCES["params"]:
            flags["params"] = f"{diff:+d} parameters"
    if row.num_classes == 80 and row.gflops is not None and row.gflops_pub:
        rel = row.gflops / row.gflops_pub - 1.0
        if abs(rel) > TOLERANCES["gflops"]:
            flags["gflops"] = f"{100 * rel:+.1f} %"
    if row.t4_trt_ms is not None and row.t4_trt_ms_pub and _on_t4(row):
        rel = row.t4_trt_ms / row.t4_trt_ms_pub - 1.0
        if abs(rel) > TOLERANCES["latency"]:
            flags["t4_trt_ms"] = f"{100 * rel:+.1f} %"
    return flags


def _flagged(cell: str, flag: str | None) -> str:
    return f"{cell} {FLAG}" if flag and cell else cell


def table_cells(rows: Sequence[Row]) -> tuple[list[list[str]], list[str]]:
    """The table as strings (one list per row, in ``HEADERS`` order) and the environment notes."""
    index, notes = _notes(rows)
    cells = []
    for row in rows:

        def lat(value: float | None, backend: str, row: Row = row) -> str:
            note = index.get((row.model, backend))
            return f"{value:.2f} [{note}]" if value is not None and note else _num(value, ".2f")

        flags = delta_flags(row)
        cells.append(
            [
                row.model + (f" ({row.source})" if row.source else ""),
                _pair(row.size, row.size_pub, "d"),
                _flagged(_pair(row.map, row.map_pub, ".1f"), flags.get("map")),
                lat(row.cpu_onnx_ms, "ort"),
                lat(row.cpu_openvino_ms, "openvino"),
                _flagged(
                    _pair_text(lat(row.t4_trt_ms, "tensorrt"), _num(row.t4_trt_ms_pub, ".2f")),
                    flags.get("t4_trt_ms"),
                ),
                _flagged(_pair(row.params_m, row.params_m_pub, ".2f"), flags.get("params")),
                _flagged(_pair(row.gflops, row.gflops_pub, ".1f"), flags.get("gflops")),
            ]
        )
    return cells, notes


def _pair_text(measured: str, published: str) -> str:
    if published:
        return f"{measured} (pub. {published})" if measured else f"(pub. {published})"
    return measured


def markdown_table(rows: Sequence[Row]) -> str:
    """The report table in Markdown with its numbered latency-environment notes."""
    cells, notes = table_cells(rows)
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    lines.append("")
    lines.append(
        "Measured figures come from the registry (mAP 50:95 of the ONNX artifact on the run's val split, "
        "in %); (pub. X) are the authors' COCO val2017 figures at 640 px; blank = not measured yet."
    )
    lines.append(f"{FLAG} {TOLERANCE_NOTE}")
    lines += [f"[{i}] {text}" for i, text in enumerate(notes, start=1)]
    return "\n".join(lines) + "\n"


def html_report(rows: Sequence[Row], *, chart: str | None = "pareto.png") -> str:
    """A standalone HTML page: the table, its notes and (when given) the chart image."""
    cells, notes = table_cells(rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    img = f'<p><img src="{html.escape(chart)}" alt="mAP against latency"></p>' if chart else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>detops comparison report</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
        f"</head><body><h1>Detector comparison</h1><table><thead><tr>{head}</tr></thead><tbody>{body}"
        f"</tbody></table><p>(pub. X): the authors' COCO val2017 figures at 640 px; blank: not measured; "
        f"measured mAP is on the run's own val split.</p><p>{html.escape(FLAG + ' ' + TOLERANCE_NOTE)}</p>"
        f"<ol>{note_html}</ol>{img}</body></html>\n"
    )


def chart_series(rows: Sequence[Row]) -> dict[str, list[tuple[str, float, float]]]:
    """(model, latency ms, mAP %) points per series: one per measured backend, plus ``published``."""
    series: dict[str, list[tuple[str, float, float]]] = {}
    for row in rows:
        if row.map is not None:
            for backend, value in (
                ("ort", row.cpu_onnx_ms),
                ("openvino", row.cpu_openvino_ms),
                ("tensorrt", row.t4_trt_ms),
            ):
                if value is not None:
                    series.setdefault(backend, []).append((row.model, value, row.map))
        if row.map_pub is not None and row.t4_trt_ms_pub is not None:
            series.setdefault("published", []).append((row.model, row.t4_trt_ms_pub, row.map_pub))
    return series


def pareto_chart(rows: Sequence[Row], out: str | Path) -> Path:
    """mAP against latency (log x), one series per backend, published T4 points hollow; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from detops.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    markers = {"ort": "o", "openvino": "s", "tensorrt": "^"}
    for name, points in chart_series(rows).items():
        points = sorted(points, key=lambda p: p[1])
        xs, ys = [p[1] for p in points], [p[2] for p in points]
        if name == "published":
            ax.plot(
                xs,
                ys,
                linestyle=":",
                marker="D",
                markerfacecolor="none",
                color="grey",
                label="published (T4 TensorRT FP16, COCO)",
            )
        else:
            ax.plot(
                xs,
                ys,
                linestyle="-",
                marker=markers.get(name, "o"),
                label=f"measured: {BACKEND_LABELS.get(name, name)}",
            )
        for model, x, y in points:
            ax.annotate(model, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale; median model time, batch 1)")
    ax.set_ylabel("mAP 50:95, %")
    ax.set_title("Accuracy against latency")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    target = Path(out)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return target


def write_report(out_dir: str | Path, *, client: Any = None, log: bool = True) -> dict[str, Any]:
    """Write ``report.md``, ``report.html``, ``pareto.png`` and ``report.json`` into ``out_dir``, log
    them to MLflow (experiment ``detops-report``) when ``log``; returns ``{"markdown", "files", "run_id"}``."""
    from detops.fileio import atomic_open, write_json
    from detops.registry.client import open_registry

    with open_registry(client=client) as client:
        rows = report_rows(client=client)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        markdown = markdown_table(rows)
        with atomic_open(out / "report.md") as fh:
            fh.write("# Detector comparison\n\n" + markdown)
        with atomic_open(out / "report.html") as fh:
            fh.write(html_report(rows))
        pareto_chart(rows, out / "pareto.png")
        write_json(out / "report.json", [asdict(r) for r in rows])
        files = [out / n for n in ("report.md", "report.html", "pareto.png", "report.json")]
        run_id = None
        if log:
            run_id = client.create_run(experiment=REPORT_EXPERIMENT, run_name="comparison report", tags={})
            for f in files:
                client.log_run_file(run_id, f, artifact_path="report")
            client.set_run_terminated(run_id)
        return {
            "markdown": markdown,
            "files": [str(f) for f in files],
            "run_id": run_id,
            "rows": json.loads(json.dumps([asdict(r) for r in rows])),
        }
