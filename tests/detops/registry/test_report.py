"""The comparison report's rows, table, HTML and chart, from hand-written tags (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import models
from detops.registry.report import (
    HEADERS,
    chart_series,
    delta_flags,
    html_report,
    markdown_table,
    pareto_chart,
    row_from_tags,
    table_cells,
)

ENV = {"cpu_model": "Test CPU", "cpu_cores_logical": 2, "batch": 1, "input_size": 256, "precision": "fp32"}
TAGS = {
    "detops.map.ort": "0.181",
    "detops.latency_ms.ort": "12.5",
    "detops.latency_env.ort": json.dumps(ENV),
    "detops.latency_ms.openvino": "9.0",
    "detops.latency_env.openvino": json.dumps(ENV),
    "detops.params": "8479631",
    "detops.gflops": "18.01",
    "detops.img_size": "256",
}


def _rows() -> list:
    pub_t = models.get_variant("damo_yolo_t").published
    pub_s = models.get_variant("rtdetrv2_s").published
    return [
        row_from_tags("damo_yolo_t", TAGS, source="v2 champion", published=pub_t),
        row_from_tags("rtdetrv2_s", None, source="", published=pub_s),
    ]


def test_row_measured_beside_published() -> None:
    measured, blank = _rows()
    pub = models.get_variant("damo_yolo_t").published
    assert measured.map is not None and abs(measured.map - 18.1) < 1e-9  # fraction -> percent
    assert measured.cpu_onnx_ms == 12.5 and measured.t4_trt_ms is None
    assert measured.params_m is not None and abs(measured.params_m - 8.479631) < 1e-9
    assert (measured.map_pub, measured.gflops_pub, measured.t4_trt_ms_pub) == (
        pub.map_50_95,
        pub.gflops,
        pub.t4_ms_table,
    )
    assert set(measured.latency_env) == {"ort", "openvino"}
    assert (
        blank.map is None and blank.cpu_onnx_ms is None and blank.source == "" and blank.map_pub is not None
    )


def test_table_cells_blanks_and_notes() -> None:
    cells, notes = table_cells(_rows())
    t, s = cells
    pub_s = models.get_variant("rtdetrv2_s").published
    assert t[0] == "damo_yolo_t (v2 champion)"
    assert t[1] == "256 (pub. 640)" and t[2] == "18.1 (pub. 42.0)"
    # each measured latency points at its environment note (one per backend: OpenVINO sorts first)
    assert (t[3], t[4]) == ("12.50 [2]", "9.00 [1]")
    assert t[5] == f"(pub. {models.get_variant('damo_yolo_t').published.t4_ms_table:.2f})"
    assert s[2] == f"(pub. {pub_s.map_50_95:.1f})" and s[3] == s[4] == ""  # nothing measured: blank
    assert len(notes) == 2 and notes[0].startswith("CPU OpenVINO") and notes[1].startswith("CPU ONNX Runtime")
    assert all("Test CPU" in n and "256 px" in n for n in notes)


def test_markdown_and_html() -> None:
    text = markdown_table(_rows())
    lines = text.splitlines()
    assert lines[0] == "| " + " | ".join(HEADERS) + " |"
    assert lines[2].startswith("| damo_yolo_t (v2 champion) | 256 (pub. 640) |")
    assert any(line.startswith("[2] CPU ONNX Runtime") for line in lines)
    assert any(
        line.startswith("Δ differs from the published figure") and "0.3 points" in line for line in lines
    )
    page = html_report(_rows())
    assert page.count("<tr>") == 3 and "pareto.png" in page and "18.1 (pub. 42.0)" in page


def test_chart_series_and_png(tmp_path: Path) -> None:
    series = chart_series(_rows())
    assert series["ort"] == [("damo_yolo_t", 12.5, series["ort"][0][2])]
    assert series["openvino"][0][1] == 9.0
    assert "tensorrt" not in series  # nothing measured there
    on_t4 = row_from_tags(
        "damo_yolo_t", {**TAGS, "detops.latency_ms.tensorrt": "2.5"}, source="", published=None
    )
    assert chart_series([on_t4])["tensorrt"] == [("damo_yolo_t", 2.5, on_t4.map)]
    assert {m for m, _, _ in series["published"]} == {"damo_yolo_t", "rtdetrv2_s"}
    out = pareto_chart(_rows(), tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def _row(**tags: str) -> Any:
    return row_from_tags(
        "rtdetrv2_s", tags, source="v1", published=models.get_variant("rtdetrv2_s").published
    )


def test_delta_flags_judge_only_comparable_figures_beyond_their_tolerance() -> None:
    pub = models.get_variant("rtdetrv2_s").published
    t4 = json.dumps({"gpu_name": "Tesla T4", "batch": 1})
    exact = {
        "detops.num_classes": "80",
        "detops.params": str(pub.params_exact),
        "detops.gflops": repr(pub.gflops),
    }
    assert delta_flags(_row(**exact)) == {}
    # mAP: on COCO val2017 only, beyond 0.3 points (0.3 itself passes)
    near = {**exact, "detops.eval_data": "coco_val2017", "detops.map.ort": repr((pub.map_50_95 - 0.3) / 100)}
    assert "map" not in delta_flags(_row(**near))
    far = {**near, "detops.map.ort": repr((pub.map_50_95 - 0.4) / 100)}
    assert delta_flags(_row(**far))["map"] == "-0.4 points"
    assert "map" not in delta_flags(_row(**{**far, "detops.eval_data": "synthetic"}))
    # params: any amount, at 80 classes only
    assert (
        delta_flags(_row(**{**exact, "detops.params": str(pub.params_exact + 1)}))["params"]
        == "+1 parameters"
    )
    assert "params" not in delta_flags(
        _row(**{**exact, "detops.params": str(pub.params_exact - 9000), "detops.num_classes": "3"})
    )
    # GFLOPs: beyond 2 %
    assert "gflops" not in delta_flags(_row(**{**exact, "detops.gflops": repr(pub.gflops * 1.019)}))
    assert delta_flags(_row(**{**exact, "detops.gflops": repr(pub.gflops * 0.97)}))["gflops"] == "-3.0 %"
    # T4 latency: beyond 10 %, and only when measured on a T4
    slow = {
        **exact,
        "detops.latency_ms.tensorrt": repr(pub.t4_ms_table * 1.12),
        "detops.latency_env.tensorrt": t4,
    }
    assert delta_flags(_row(**slow))["t4_trt_ms"] == "+12.0 %"
    assert "t4_trt_ms" not in delta_flags(
        _row(**{**slow, "detops.latency_ms.tensorrt": repr(pub.t4_ms_table * 1.09)})
    )
    h100 = {**slow, "detops.latency_env.tensorrt": json.dumps({"gpu_name": "NVIDIA H100"})}
    assert "t4_trt_ms" not in delta_flags(_row(**h100))
    cells, _ = table_cells([_row(**far), _row(**exact)])
    assert cells[0][2].endswith(" Δ") and not cells[1][2].endswith("Δ")


class _Registry:
    """What ``report_rows`` reads, over dicts: versions {model: {version: tags}}, champions {model:
    version} and latency-only entries {(experiment, variant): tags}."""

    def __init__(self, versions: dict, champions: dict, entries: dict) -> None:
        self.versions, self.champions, self.entries = versions, champions, entries

    def model_names(self) -> list[str]:
        return sorted(self.versions)

    def alias_version(self, name: str, alias: str) -> int | None:
        assert alias == "champion"
        return self.champions.get(name)

    def latest_version(self, name: str) -> int | None:
        return max(self.versions[name], default=None)

    def get_version(self, name: str, version: int) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(tags=self.versions[name][version])

    def newest_run_tags(self, experiment: str, tags: dict[str, str]) -> dict[str, str] | None:
        assert tags["detops.latency_only"] == "true"
        return self.entries.get((experiment, tags["detops.variant"]))


def test_rows_come_from_the_champion_else_the_newest_version_else_a_latency_only_entry() -> None:
    from detops.registry.report import report_rows

    latency_only = {**TAGS, "detops.latency_only": "true"}
    del latency_only["detops.map.ort"]
    registry = _Registry(
        versions={
            "detops-damo_yolo_t": {1: {**TAGS, "detops.map.ort": "0.1"}, 2: TAGS},
            "detops-rtdetrv2_s": {1: {**TAGS, "detops.map.ort": "0.2"}, 3: {**TAGS, "detops.map.ort": "0.3"}},
            "detops-damo_yolo_tiny": {4: TAGS},  # not a table row: listed after the table
        },
        champions={"detops-damo_yolo_t": 1},
        entries={
            ("detops-benchmark", "damo_yolo_s"): latency_only,
            ("detops-benchmark", "damo_yolo_t"): TAGS,
        },
    )
    rows = {r.model: r for r in report_rows(client=registry)}
    order = [r.model for r in report_rows(client=registry)]
    assert order[:8] == [
        "damo_yolo_t", "damo_yolo_s", "damo_yolo_m", "damo_yolo_l",
        "rtdetrv2_s", "rtdetrv2_m", "rtdetrv2_l", "rtdetrv2_x",
    ] and order[8:] == ["damo_yolo_tiny"]  # fmt: skip
    assert (rows["damo_yolo_t"].source, rows["damo_yolo_t"].map) == (
        "v1 champion",
        10.0,
    )  # not v2, not the entry
    assert (rows["rtdetrv2_s"].source, rows["rtdetrv2_s"].map) == ("v3 latest, no champion", 30.0)
    assert rows["damo_yolo_s"].source == "untrained, latency only"
    assert rows["damo_yolo_s"].map is None and rows["damo_yolo_s"].cpu_onnx_ms == 12.5
    assert rows["damo_yolo_m"].source == "" and rows["damo_yolo_m"].cpu_onnx_ms is None
    assert (
        rows["damo_yolo_tiny"].source == "v4 latest, no champion" and rows["damo_yolo_tiny"].map_pub is None
    )
    # table rows carry their variant's published figures
    assert (rows["damo_yolo_t"].map_pub, rows["rtdetrv2_x"].map_pub) == (42.0, 54.3)


def test_a_fully_measured_row_renders_every_cell_and_flag() -> None:
    pub = models.get_variant("rtdetrv2_s").published
    t4 = {"gpu_name": "Tesla T4", "batch": 1, "input_size": 640, "precision": "fp16"}
    tags = {
        **TAGS,
        "detops.img_size": "640",
        "detops.num_classes": "80",
        "detops.eval_data": "coco_val2017",
        "detops.map.ort": "0.455",  # 45.5 against 48.1: flagged
        "detops.params": str(pub.params_exact + 7),  # flagged
        "detops.gflops": repr(pub.gflops * 1.019),  # 1.9 %: within 2 %, not flagged
        "detops.latency_ms.tensorrt": repr(pub.t4_ms_table * 1.2),  # flagged (measured on a T4)
        "detops.latency_env.tensorrt": json.dumps(t4),
    }
    row = row_from_tags("rtdetrv2_s", tags, source="v7 champion", published=pub)
    (cells,), notes = table_cells([row])
    assert cells == [
        "rtdetrv2_s (v7 champion)",
        "640 (pub. 640)",
        f"45.5 (pub. {pub.map_50_95:.1f}) Δ",
        "12.50 [2]",
        "9.00 [1]",
        f"{pub.t4_ms_table * 1.2:.2f} [3] (pub. {pub.t4_ms_table:.2f}) Δ",
        f"{(pub.params_exact + 7) / 1e6:.2f} (pub. {pub.params_m:.2f}) Δ",
        f"{pub.gflops * 1.019:.1f} (pub. {pub.gflops:.1f})",
    ]
    assert notes[2] == "T4 TensorRT, Tesla T4, batch 1, 640 px, fp16; median model time"
    assert delta_flags(row) == {"map": "-2.6 points", "params": "+7 parameters", "t4_trt_ms": "+20.0 %"}
    heavy = row_from_tags(
        "rtdetrv2_s", {**tags, "detops.gflops": repr(pub.gflops * 1.5)}, source="", published=pub
    )
    assert delta_flags(heavy)["gflops"] == "+50.0 %"
    assert table_cells([heavy])[0][0][7] == f"{pub.gflops * 1.5:.1f} (pub. {pub.gflops:.1f}) Δ"
    # a row's source only when something was measured; a latency without its environment has no note
    bare = row_from_tags("rtdetrv2_s", {"detops.latency_ms.ort": "3.0"}, source="v1", published=pub)
    (bare_cells,), bare_notes = table_cells([bare])
    assert bare_cells[0] == "rtdetrv2_s (v1)" and bare_cells[3] == "3.00" and bare_notes == []
    assert row_from_tags("rtdetrv2_s", None, source="v1", published=pub).source == ""
    unpublished = row_from_tags("damo_yolo_tiny", TAGS, source="v2", published=None)
    assert (
        unpublished.size_pub,
        unpublished.map_pub,
        unpublished.params_m_pub,
        unpublished.t4_trt_ms_pub,
    ) == (
        None,
        None,
        None,
        None,
    )
    # the comparison table's T4 figure, else the authors' own
    upstream_only = models.get_variant("rtdetrv2_m_r34").published
    assert (
        row_from_tags("rtdetrv2_m_r34", {}, source="", published=upstream_only).t4_trt_ms_pub
        == upstream_only.t4_ms_upstream
    )
    assert row_from_tags("rtdetrv2_s", {}, source="", published=pub).t4_trt_ms_pub == pub.t4_ms_table


def test_write_report_writes_and_logs_its_four_files(tmp_path: Path) -> None:
    from detops.registry.report import write_report

    logged: list[tuple[str, str, str | None]] = []

    class Logging(_Registry):
        def create_run(self, *, experiment: str, run_name: str, tags: dict[str, str]) -> str:
            logged.append(("run", experiment, run_name))
            return "r1"

        def log_run_file(self, run_id: str, path: Path, *, artifact_path: str | None = None) -> None:
            logged.append((run_id, Path(path).name, artifact_path))

        def set_run_terminated(self, run_id: str) -> None:
            logged.append(("end", run_id, None))

    registry = Logging(
        versions={"detops-damo_yolo_t": {1: TAGS}}, champions={"detops-damo_yolo_t": 1}, entries={}
    )
    out = write_report(tmp_path / "new" / "r", client=registry)  # parents created
    names = ["report.md", "report.html", "pareto.png", "report.json"]
    assert out["files"] == [str(tmp_path / "new" / "r" / n) for n in names] and out["run_id"] == "r1"
    assert logged == [
        ("run", "detops-report", "comparison report"),
        *[("r1", n, "report") for n in names],
        ("end", "r1", None),
    ]
    text = (tmp_path / "new" / "r" / "report.md").read_text()
    assert text.startswith("# Detector comparison\n\n| Model |") and out["markdown"] in text
    assert "damo_yolo_t (v1 champion)" in (tmp_path / "new" / "r" / "report.html").read_text()
    saved = json.loads((tmp_path / "new" / "r" / "report.json").read_text())
    assert saved == out["rows"] and saved[0]["model"] == "damo_yolo_t" and saved[0]["source"] == "v1 champion"
    assert (tmp_path / "new" / "r" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logged.clear()  # again into the same directory, not logged
    assert write_report(tmp_path / "new" / "r", client=registry, log=False)["run_id"] is None and logged == []


NOTE_OV = "CPU OpenVINO, Test CPU, logical cores 2, batch 1, 256 px, fp32; median model time"
NOTE_ORT = "CPU ONNX Runtime, Test CPU, logical cores 2, batch 1, 256 px, fp32; median model time"
TOLERANCE_LINE = (
    "Δ differs from the published figure beyond the tolerance: mAP by more than 0.3 points (measured on "
    "COCO val2017 only), params by any amount and GFLOPs by more than 2 % (80-class models), T4 TensorRT "
    "latency by more than 10 % (measured on a T4)."
)


def test_the_markdown_table_exactly() -> None:
    rows = _rows()
    rows[1] = row_from_tags("rtdetrv2_s", {"detops.latency_ms.ort": "3"}, source="a|b", published=None)
    assert markdown_table(rows) == (
        "| Model | size | mAP 50-95 | CPU ONNX ms | CPU OpenVINO ms | T4 TensorRT ms | params M | GFLOPs |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| damo_yolo_t (v2 champion) | 256 (pub. 640) | 18.1 (pub. 42.0) | 12.50 [2] | 9.00 [1] | (pub. 2.32) "
        "| 8.48 (pub. 8.50) | 18.0 (pub. 18.1) |\n"
        "| rtdetrv2_s (a\\|b) |  |  | 3.00 |  |  |  |  |\n"
        "\n"
        "Measured figures come from the registry (mAP 50:95 of the ONNX artifact on the run's val split, in %); "
        "(pub. X) are the authors' COCO val2017 figures at 640 px; blank = not measured yet.\n"
        f"{TOLERANCE_LINE}\n[1] {NOTE_OV}\n[2] {NOTE_ORT}\n"
    )


def test_the_html_page_exactly() -> None:
    head = "".join(f"<th>{h}</th>" for h in HEADERS)
    cells = [
        "damo_yolo_t (v2 champion)",
        "256 (pub. 640)",
        "18.1 (pub. 42.0)",
        "12.50 [2]",
        "9.00 [1]",
        "(pub. 2.32)",
        "8.48 (pub. 8.50)",
        "18.0 (pub. 18.1)",
    ]
    page = html_report(_rows()[:1])
    assert page == (
        "<!doctype html><html><head><meta charset='utf-8'><title>detops comparison report</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
        f"</head><body><h1>Detector comparison</h1><table><thead><tr>{head}</tr></thead><tbody>"
        "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr></tbody></table>"
        "<p>(pub. X): the authors' COCO val2017 figures at 640 px; blank: not measured; measured mAP is on "
        f"the run's own val split.</p><p>{TOLERANCE_LINE}</p><ol><li>{NOTE_OV}</li><li>{NOTE_ORT}</li></ol>"
        '<p><img src="pareto.png" alt="mAP against latency"></p></body></html>\n'
    )
    assert html_report(_rows()[:1], chart=None).endswith(f"<li>{NOTE_ORT}</li></ol></body></html>\n")
    two = html_report(_rows())
    assert "</td></tr><tr><td>rtdetrv2_s</td>" in two  # rows follow each other directly
    escaped = html_report([row_from_tags("x<y", {"detops.latency_ms.ort": "1"}, source="", published=None)])
    assert "<td>x&lt;y</td>" in escaped


def test_a_latency_note_names_every_part_of_its_environment() -> None:
    env = {
        "cpu_model": "Xeon",
        "cpu_cores_logical": 2,
        "threads": 1,
        "gpu_name": "",
        "batch": 4,
        "input_size": 320,
        "precision": "bf16",
        "platform": "Linux-6",
    }
    tags = {"detops.latency_ms.ort": "2", "detops.latency_env.ort": json.dumps(env)}
    _, notes = table_cells([row_from_tags("m", tags, source="", published=None)])
    assert notes == [
        "CPU ONNX Runtime, Xeon, logical cores 2, threads 1, batch 4, 320 px, bf16, Linux-6; median model time"
    ]


def test_the_chart_draws_every_series_as_the_reader_sees_it(tmp_path: Path, monkeypatch: Any) -> None:
    """The figure behind pareto.png, kept open instead of closed: its size, axes, every series' points,
    line and marker, the point labels and the legend; and the PNG's pixel size."""
    import struct

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)
    on_t4 = row_from_tags(
        "damo_yolo_s",
        {"detops.map.ort": "0.25", "detops.latency_ms.tensorrt": "2.5"},
        source="",
        published=None,
    )
    rows = [*_rows(), on_t4]
    out = pareto_chart(rows, tmp_path / "p.png")
    (fig,) = figures
    assert tuple(fig.get_size_inches()) == (8.0, 5.0) and fig.dpi == 110
    width, height = struct.unpack(">II", out.read_bytes()[16:24])  # the PNG's IHDR
    assert (width, height) == (880, 550)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    assert ax.get_xlabel() == "latency, ms (log scale; median model time, batch 1)"
    assert ax.get_ylabel() == "mAP 50:95, %"
    assert ax.get_title() == "Accuracy against latency"
    assert all(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())
    assert ax.xaxis.get_minorticklines() and all(g.get_alpha() == 0.3 for g in ax.get_xgridlines())
    minor = ax.xaxis.get_minor_ticks()  # the log axis' minor ticks carry grid lines too
    assert minor and all(t.gridline.get_visible() for t in minor)

    lines = {line.get_label(): line for line in ax.get_lines()}
    m = rows[0].map
    expected = {
        "measured: CPU ONNX Runtime": ("-", "o", [12.5], [m]),
        "measured: CPU OpenVINO": ("-", "s", [9.0], [m]),
        "measured: T4 TensorRT": ("-", "^", [2.5], [on_t4.map]),
    }
    pub = sorted((r.t4_trt_ms_pub, r.map_pub, r.model) for r in _rows())
    assert set(lines) == {*expected, "published (T4 TensorRT FP16, COCO)"}
    for label, (style, marker, xs, ys) in expected.items():
        line = lines[label]
        assert (line.get_linestyle(), line.get_marker()) == (style, marker), label
        assert list(line.get_xdata()) == xs and list(line.get_ydata()) == ys, label
    published = lines["published (T4 TensorRT FP16, COCO)"]
    assert published.get_linestyle() == ":" and published.get_marker() == "D"
    assert published.get_markerfacecolor() == "none" and to_rgba(published.get_color()) == to_rgba("grey")
    assert list(published.get_xdata()) == [p[0] for p in pub]  # sorted by latency
    assert list(published.get_ydata()) == [p[1] for p in pub]

    labels = sorted((t.get_text(), t.xy, t.xyann, t.get_fontsize(), t.anncoords) for t in ax.texts)
    assert labels == sorted(
        [
            ("damo_yolo_t", (12.5, m), (4, 4), 7, "offset points"),
            ("damo_yolo_t", (9.0, m), (4, 4), 7, "offset points"),
            ("damo_yolo_s", (2.5, on_t4.map), (4, 4), 7, "offset points"),
            *[(name, (x, y), (4, 4), 7, "offset points") for x, y, name in pub],
        ]
    )
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [line.get_label() for line in ax.get_lines()]
    assert all(t.get_fontsize() == 8 for t in legend.get_texts())
    plt.close("all")


def test_a_chart_with_nothing_to_draw_has_no_legend(tmp_path: Path, monkeypatch: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)
    out = pareto_chart([row_from_tags("damo_yolo_t", None, source="", published=None)], tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figures
    assert fig.axes[0].get_lines() == [] and fig.axes[0].get_legend() is None
    plt.close("all")


def test_each_series_is_drawn_in_latency_order(tmp_path: Path, monkeypatch: Any) -> None:
    """Points joined left to right by latency: not by model name, nor by mAP (three models whose
    three orders all differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)
    rows = [
        row_from_tags(name, {"detops.map.ort": m, "detops.latency_ms.ort": ms}, source="", published=None)
        for name, m, ms in (("mm", "0.30", "20"), ("zz", "0.40", "5"), ("aa", "0.20", "10"))
    ]
    pareto_chart(rows, tmp_path / "p.png")
    (line,) = figures[0].axes[0].get_lines()
    assert list(line.get_xdata()) == [5.0, 10.0, 20.0]
    assert list(line.get_ydata()) == [rows[1].map, rows[2].map, rows[0].map]
    plt.close("all")
