"""Training plots as PNG files (matplotlib's Agg backend): loss and mAP curves, the precision-recall
curve at IoU 0.5, per-class AP bars. Plain values in, one file out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detops.fileio import atomic_path


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5), dpi=100)


def _save(fig: Any, out: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return out


def plot_curves(history: Sequence[Mapping[str, Any]], *, prefix: str, title: str, out: str | Path) -> Path:
    """One line per metric named ``<prefix>*`` in ``history`` (metrics.jsonl records) against epoch."""
    fig, ax = _figure()
    keys = sorted({k for rec in history for k in rec if k.startswith(prefix)})
    for key in keys:
        points = [(rec["epoch"], rec[key]) for rec in history if key in rec]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_title(title)
    if keys:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, Path(out))


def plot_pr_curve(recall: Sequence[float], precision: Sequence[float], *, out: str | Path) -> Path:
    """Precision against recall (IoU 0.5, all areas, 100 detections, mean over classes)."""
    fig, ax = _figure()
    ax.plot(recall, precision)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall, IoU 0.5")
    ax.grid(alpha=0.3)
    return _save(fig, Path(out))


def plot_class_ap(per_class: Mapping[str, float | None], *, out: str | Path) -> Path:
    """Horizontal bars of AP 50:95 per class (classes without ground truth left out)."""
    items = [(name, ap) for name, ap in per_class.items() if ap is not None]
    fig, ax = _figure()
    ax.barh([n for n, _ in items], [ap for _, ap in items])
    ax.set_xlim(0, 1)
    ax.set_xlabel("AP 50:95")
    ax.set_title("per-class AP")
    ax.invert_yaxis()
    return _save(fig, Path(out))
