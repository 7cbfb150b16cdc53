"""Selection across families: the best-mAP champion within a latency budget, and the Pareto front.

``pareto_front`` and ``best_within_budget`` are pure functions over :class:`Point`; ``champion_points``
reads each ``detops-*`` model's champion from the registry (mAP of its deployed artifact and median
latency on one backend) and ``select`` puts the two together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from detops.registry import tags as T


@dataclass(frozen=True)
class Point:
    """One model on the accuracy/latency plane.

    Attributes:
        name: registered model (or variant) name.
        version: registered version (0 for published figures).
        map: mAP 50:95 in [0, 1].
        latency_ms: median latency in milliseconds.
        backend: the backend the latency was measured on.
    """

    name: str
    version: int
    map: float
    latency_ms: float
    backend: str = ""


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` is at least as accurate and as fast as ``b`` and strictly better in one."""
    return a.map >= b.map and a.latency_ms <= b.latency_ms and (a.map > b.map or a.latency_ms < b.latency_ms)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point dominates, fastest first (ties by name). Non-finite points are dropped.

    Equal points (same mAP and latency) are all kept: neither dominates the other.
    """
    finite = [p for p in points if math.isfinite(p.map) and math.isfinite(p.latency_ms)]
    front = [p for p in finite if not any(dominates(q, p) for q in finite)]
    return sorted(front, key=lambda p: (p.latency_ms, -p.map, p.name))


def best_within_budget(points: Sequence[Point], budget_ms: float) -> Point | None:
    """The most accurate point with ``latency_ms <= budget_ms`` (ties: faster, then name), or ``None``."""
    eligible = [p for p in points if math.isfinite(p.map) and p.latency_ms <= budget_ms]
    if not eligible:
        return None
    return min(eligible, key=lambda p: (-p.map, p.latency_ms, p.name))


@dataclass(frozen=True)
class Selection:
    """What ``detops select`` prints: the choice, the front, and every champion considered.

    ``unmeasured`` names champions with no mAP or latency on the backend.
    """

    backend: str
    budget_ms: float
    best: Point | None
    front: tuple[Point, ...]
    champions: tuple[Point, ...]
    unmeasured: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "backend": self.backend,
            "latency_budget_ms": self.budget_ms,
            "best": asdict(self.best) if self.best else None,
            "pareto_front": [asdict(p) for p in self.front],
            "champions": [asdict(p) for p in self.champions],
            "unmeasured": list(self.unmeasured),
        }


def point_from_tags(name: str, version: int, tags: dict[str, str], *, backend: str) -> Point | None:
    """A champion's point on ``backend`` from its tags, or ``None`` when it was not measured there."""
    m = T.get_float(tags, T.map_tag(backend))
    lat = T.get_float(tags, T.latency_tag(backend))
    if m is None or lat is None:
        return None
    return Point(name=name, version=version, map=m, latency_ms=lat, backend=backend)


def select(*, budget_ms: float, backend: str, client: Any = None) -> Selection:
    """Read every champion from the registry and choose (see the module docstring).

    ``client``: a :class:`~detops.registry.client.RegistryClient` (default: the settings' server).
    """
    from detops.registry.client import CHAMPION, open_registry

    with open_registry(client=client) as client:
        points: list[Point] = []
        unmeasured: list[str] = []
        for name in client.model_names():
            version = client.alias_version(name, CHAMPION)
            if version is None:
                continue
            point = point_from_tags(name, version, client.get_version(name, version).tags, backend=backend)
            if point is None:
                unmeasured.append(f"{name}@v{version}")
            else:
                points.append(point)
        return Selection(
            backend=backend,
            budget_ms=budget_ms,
            best=best_within_budget(points, budget_ms),
            front=tuple(pareto_front(points)),
            champions=tuple(sorted(points, key=lambda p: p.name)),
            unmeasured=tuple(unmeasured),
        )
