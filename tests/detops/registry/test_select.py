"""The Pareto front and the within-budget choice, against hand-worked examples and a sweep reference."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from detops.registry.select import Point, best_within_budget, pareto_front, point_from_tags, select


def P(name: str, m: float, lat: float) -> Point:
    return Point(name=name, version=1, map=m, latency_ms=lat, backend="ort")


POINTS = [
    P("a", 0.30, 10.0),  # front: fastest
    P("b", 0.40, 20.0),  # front
    P("c", 0.35, 25.0),  # dominated by b (slower and less accurate)
    P("d", 0.50, 40.0),  # front: most accurate
    P("e", 0.30, 12.0),  # dominated by a (same mAP, slower)
    P("f", 0.50, 45.0),  # dominated by d (same mAP, slower)
]


def test_front_hand_worked() -> None:
    assert [p.name for p in pareto_front(POINTS)] == ["a", "b", "d"]


def test_front_keeps_exact_ties_and_drops_nan() -> None:
    tie = [P("x", 0.4, 5.0), P("y", 0.4, 5.0), P("z", math.nan, 1.0), P("w", 0.1, math.inf)]
    assert [p.name for p in pareto_front(tie)] == ["x", "y"]
    assert pareto_front([]) == []


def test_best_within_budget() -> None:
    assert best_within_budget(POINTS, 30.0) == POINTS[1]  # b: best mAP at <= 30 ms
    assert best_within_budget(POINTS, 20.0) == POINTS[1]  # boundary is inclusive
    assert best_within_budget(POINTS, 19.9) == POINTS[0]  # a over e: same mAP, faster
    assert best_within_budget(POINTS, 100.0) == POINTS[3]  # d over f: same mAP, faster
    assert best_within_budget(POINTS, 5.0) is None


def _sweep(points: list[Point]) -> list[str]:
    """Independent reference for distinct values: by latency, keep each point beating every faster one."""
    best = -1.0
    kept = []
    for p in sorted(points, key=lambda p: p.latency_ms):
        if p.map > best:
            kept.append(p.name)
            best = p.map
    return kept


@given(
    maps=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=12, unique=True),
    lats=st.lists(st.floats(0.1, 1000, allow_nan=False), min_size=12, max_size=12, unique=True),
)
def test_front_matches_sweep(maps: list[float], lats: list[float]) -> None:
    points = [P(f"m{i}", m, lats[i]) for i, m in enumerate(maps)]
    assert [p.name for p in pareto_front(points)] == _sweep(points)


def test_point_from_tags() -> None:
    tags = {"detops.map.ort": "0.25", "detops.latency_ms.ort": "12.5", "detops.map.openvino": "0.25"}
    assert point_from_tags("detops-x", 3, tags, backend="ort") == Point("detops-x", 3, 0.25, 12.5, "ort")
    assert point_from_tags("detops-x", 3, tags, backend="openvino") is None  # no latency there


class _Registry:
    """The three reads ``select`` makes, over a dict {model: (champion version or None, tags)}."""

    def __init__(self, models: dict[str, tuple[int | None, dict[str, str]]]) -> None:
        self.models = models
        self.asked: list[tuple[str, str]] = []

    def model_names(self) -> list[str]:
        return sorted(self.models)

    def alias_version(self, name: str, alias: str) -> int | None:
        self.asked.append((name, alias))
        return self.models[name][0]

    def get_version(self, name: str, version: int) -> Any:
        assert version == self.models[name][0]
        return SimpleNamespace(tags=self.models[name][1])


def _tags(map_: float, ms: float, backend: str = "ort") -> dict[str, str]:
    return {f"detops.map.{backend}": str(map_), f"detops.latency_ms.{backend}": str(ms)}


def test_select_reads_every_champion_and_reports_all_of_it() -> None:
    registry = _Registry(
        {
            "detops-b": (2, _tags(0.40, 30.0)),
            "detops-a": (1, _tags(0.30, 10.0)),
            "detops-c": (3, _tags(0.35, 40.0)),  # dominated by b
            "detops-d": (None, _tags(0.9, 1.0)),  # no champion: not considered
            "detops-e": (5, _tags(0.5, 5.0, backend="openvino")),  # not measured on ort
        }
    )
    sel = select(budget_ms=35.0, backend="ort", client=registry)
    assert registry.asked == [
        (n, "champion") for n in ("detops-a", "detops-b", "detops-c", "detops-d", "detops-e")
    ]
    assert sel.best is not None and (sel.best.name, sel.best.version) == ("detops-b", 2)
    assert [p.name for p in sel.front] == ["detops-a", "detops-b"]
    assert [p.name for p in sel.champions] == ["detops-a", "detops-b", "detops-c"]
    assert sel.unmeasured == ("detops-e@v5",)
    assert sel.to_dict() == {
        "backend": "ort",
        "latency_budget_ms": 35.0,
        "best": {"name": "detops-b", "version": 2, "map": 0.40, "latency_ms": 30.0, "backend": "ort"},
        "pareto_front": [
            {"name": "detops-a", "version": 1, "map": 0.30, "latency_ms": 10.0, "backend": "ort"},
            {"name": "detops-b", "version": 2, "map": 0.40, "latency_ms": 30.0, "backend": "ort"},
        ],
        "champions": [
            {"name": n, "version": v, "map": m, "latency_ms": ms, "backend": "ort"}
            for n, v, m, ms in (
                ("detops-a", 1, 0.30, 10.0),
                ("detops-b", 2, 0.40, 30.0),
                ("detops-c", 3, 0.35, 40.0),
            )
        ],
        "unmeasured": ["detops-e@v5"],
    }
    nothing = select(budget_ms=5.0, backend="ort", client=registry)
    assert nothing.best is None and nothing.to_dict()["best"] is None


def test_dominance_needs_strictly_better_on_one_axis() -> None:
    a = Point(name="a", version=1, map=0.4, latency_ms=10.0, backend="ort")
    same_speed_worse = Point(name="b", version=1, map=0.3, latency_ms=10.0, backend="ort")
    assert [p.name for p in pareto_front([a, same_speed_worse])] == ["a"]
    # equal latency: the better mAP first
    tie = Point(name="c", version=1, map=0.5, latency_ms=10.0, backend="ort")
    assert [p.name for p in pareto_front([a, tie])] == ["c"]
