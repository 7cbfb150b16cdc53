"""Promotion through the policy's gates, with an audit record, and rollback; the two aliases.

Aliases: ``champion`` is the version in service; ``challenger`` is the newest candidate that is not
champion: a version registered and not yet judged, or one that failed a gate. A version that was ever
promoted (a champion now or before, or one rolled back) is no candidate. :func:`challenger_for` is that
rule over plain values; registration (:func:`refresh_challenger`), ``promote`` and ``rollback`` apply it.

``promote`` holds the model's registry lock for the whole decision, so two promotions of one model
run one after the other and each judges the champion the other left behind. Inside the lock:

1. every gate runs (pure functions over the version's tags, see :class:`~detops.registry.policy.Policy`);
2. the decision and each gate's figure and verdict go to version tags and to an audit record;
3. only when every gate passed: the champion history grows;
4. ``challenger`` is re-pointed by the rule, the champion-to-be excluded: a promoted version loses it
   (and it goes to the newest other candidate, or away when there is none); a rejected version keeps
   or takes it, unless a newer candidate holds it;
5. only when every gate passed: the champion is re-read and compared with the one the gates judged
   against (compare-and-set), and ``champion`` moves, last and once.

Any exception in 2-5 puts the aliases (an absent ``challenger`` included) and the champion history
back as they were and records an ``aborted`` audit entry before re-raising. A failed gate leaves
``champion`` where it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from detops.errors import DetopsError
from detops.registry import tags as T
from detops.registry.client import CHALLENGER, CHAMPION, RegistryClient, model_name, open_registry, whoami
from detops.registry.gates import GateResult
from detops.registry.policy import Candidate, Policy
from detops.tracking.credentials import without_userinfo


@dataclass(frozen=True)
class Decision:
    """What ``promote`` or ``rollback`` did.

    Attributes:
        model: registered model name.
        version: the version judged (promote) or restored (rollback).
        action: ``"promote"`` or ``"rollback"``.
        decision: ``"promoted"``, ``"rejected"`` or ``"rolled back"``.
        gates: each gate's result (empty for rollback).
        previous_champion: the champion before, ``None`` when there was none.
        champion: the champion after.
        audit_run_id: the audit record's MLflow run.
        challenger: the challenger after, ``None`` when there is none.
    """

    model: str
    version: int
    action: str
    decision: str
    gates: tuple[GateResult, ...]
    previous_champion: int | None
    champion: int | None
    audit_run_id: str
    challenger: int | None = None

    @property
    def passed(self) -> bool:
        """Whether the decision moved the champion (or the rollback happened)."""
        return self.decision in ("promoted", "rolled back")


# Decisions that put a version in service at some point: it is no candidate any more.
_SERVED = frozenset({"promoted", "rolled back"})


def challenger_for(versions: Iterable[tuple[int, str | None]], champion: int | None) -> int | None:
    """The version ``challenger`` points at: the newest one that is not ``champion`` and was never in
    service, ``None`` when there is none.

    ``versions``: ``(number, decision)`` per version, in any order; ``decision`` is the version's
    ``detops.promotion.decision`` tag (``"promoted"``, ``"rejected"``, ``"rolled back"``) or ``None``
    when it was never judged. Promoted and rolled-back versions are excluded.
    """
    return max((v for v, d in versions if v != champion and d not in _SERVED), default=None)


def _challenger_now(client: RegistryClient, name: str, champion: int | None) -> int | None:
    """:func:`challenger_for` over the versions of ``name`` as the registry holds them now."""
    return challenger_for(((v.version, v.tags.get(T.DECISION)) for v in client.versions(name)), champion)


def refresh_challenger(client: RegistryClient, name: str) -> int | None:
    """Point ``challenger`` of ``name`` by :func:`challenger_for`, under the model's registry lock
    (``register_run`` calls it right after creating a version, which then becomes ``challenger``).
    Returns the challenger."""
    with client.lock(name):
        challenger = _challenger_now(client, name, client.alias_version(name, CHAMPION))
        client.set_alias(name, CHALLENGER, challenger)
    return challenger


def candidate_from_tags(tags: dict[str, str], *, backend: str) -> Candidate:
    """The figures the gates judge, read from a version's ``detops.*`` tags for ``backend``."""
    return Candidate(
        data_valid=T.get_bool(tags, T.DATA_VALID),
        artifact_map=T.get_float(tags, T.map_tag(backend)),
        checkpoint_map=T.get_float(tags, T.MAP_CHECKPOINT),
        latency_ms=T.get_float(tags, T.latency_tag(backend)),
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _gate_tags(results: list[GateResult]) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in results:
        out[T.gate_tag(r.name, "passed")] = T.fmt_bool(r.passed)
        out[T.gate_tag(r.name, "value")] = T.fmt_float(r.value)
        out[T.gate_tag(r.name, "threshold")] = T.fmt_float(r.threshold)
        out[T.gate_tag(r.name, "detail")] = r.detail
    return out


def _gate_dict(r: GateResult) -> dict[str, Any]:
    return {
        "name": r.name,
        "passed": r.passed,
        "value": r.value,
        "threshold": r.threshold,
        "detail": r.detail,
    }


def promote(
    variant: str,
    *,
    policy: Policy | None = None,
    version: int | None = None,
    client: RegistryClient | None = None,
    who: str | None = None,
) -> Decision:
    """Judge version ``version`` (default: the newest) of ``detops-<variant>`` and move ``champion``
    to it only if every gate of ``policy`` (default: the defaults) passes. See the module docstring.

    Raises ``DetopsError`` when the model or version does not exist.
    """
    policy = policy or Policy()
    with open_registry(client=client) as client:
        name = model_name(variant)
        if not client.model_exists(name):
            raise DetopsError(f"no registered model {name!r}; register a run first (`detops register RUN`)")
        who = who or whoami()
        with client.lock(name):
            if version is None:
                version = client.latest_version(name)
                if version is None:
                    raise DetopsError(f"registered model {name!r} has no versions yet")
            target = client.get_version(name, version)
            previous_champion = client.alias_version(name, CHAMPION)
            previous_challenger = client.alias_version(name, CHALLENGER)
            history = client.champion_history(name)

            champion_map: float | None = None
            champion_note = "no champion"
            if previous_champion is not None:
                champ_tags = client.get_version(name, previous_champion).tags
                champion_map = T.get_float(champ_tags, T.map_tag(policy.backend))
                champion_note = f"v{previous_champion} mAP {champion_map}"
                if champion_map is None:
                    champion_map = float(
                        "nan"
                    )  # a champion without a figure on this backend cannot be beaten
            results = policy.evaluate(
                candidate_from_tags(target.tags, backend=policy.backend), champion_map=champion_map
            )
            passed = all(r.passed for r in results)
            decision = "promoted" if passed else "rejected"
            when = _now()
            failed = [r.name for r in results if not r.passed]
            why = (
                "every gate passed"
                if passed
                else "failed gate(s): " + "; ".join(r.detail for r in results if not r.passed)
            )
            record: dict[str, Any] = {
                "action": "promote",
                "model": name,
                "version": version,
                "decision": decision,
                "when": when,
                "who": who,
                "why": why,
                "failed_gates": failed,
                "previous_champion": previous_champion,
                "champion_reference": champion_note,
                "policy": policy.to_dict(),
                "gates": [_gate_dict(r) for r in results],
                "tracking_uri_kind": client.tracking_uri.split(":", 1)[0],
            }
            try:
                audit_run = client.write_audit(record)
                version_tags = _gate_tags(results)
                version_tags.update(
                    {
                        T.DECISION: decision,
                        T.DECISION_WHEN: when,
                        T.DECISION_WHO: who,
                        T.DECISION_POLICY: json.dumps(policy.to_dict(), sort_keys=True),
                        T.DECISION_AUDIT: audit_run,
                    }
                )
                client.set_version_tags(name, version, version_tags)
                champion = version if passed else previous_champion
                if passed and (not history or history[-1] != version):
                    client.set_champion_history(name, [*history, version])
                challenger = _challenger_now(client, name, champion)
                if challenger != previous_challenger:
                    client.set_alias(name, CHALLENGER, challenger)
                if passed:
                    now = client.alias_version(name, CHAMPION)
                    if now != previous_champion:  # someone outside the lock moved it: judge again
                        raise DetopsError(
                            f"{name}: champion moved from v{previous_champion} to v{now} during the promotion; "
                            "nothing changed, run it again",
                            exit_code=1,
                        )
                    client.set_alias(name, CHAMPION, version)  # the one and last move
            except BaseException as exc:
                _restore(
                    client, name, champion=previous_champion, challenger=previous_challenger, history=history
                )
                with contextlib.suppress(Exception):
                    why = without_userinfo(f"{type(exc).__name__}: {exc}")  # MLflow's errors quote the URI
                    client.write_audit({**record, "decision": "aborted", "why": why, "when": _now()})
                raise
        return Decision(
            name,
            version,
            "promote",
            decision,
            tuple(results),
            previous_champion,
            champion,
            audit_run,
            challenger,
        )


def _restore(
    client: RegistryClient, name: str, *, champion: int | None, challenger: int | None, history: list[int]
) -> None:
    """Best effort: aliases and champion history as they were before a failed promotion/rollback."""
    for step in (
        lambda: client.set_alias(name, CHAMPION, champion),
        lambda: client.set_alias(name, CHALLENGER, challenger),
        lambda: client.set_champion_history(name, history),
    ):
        with contextlib.suppress(Exception):
            step()


def rollback(variant: str, *, client: RegistryClient | None = None, who: str | None = None) -> Decision:
    """Restore the champion before the current one of ``detops-<variant>`` and record it.

    The champion history loses its last entry; the version taken out of service is tagged
    ``rolled back`` and ``challenger`` is re-pointed by :func:`challenger_for`. ``DetopsError`` when
    there is no earlier champion.
    """
    with open_registry(client=client) as client:
        name = model_name(variant)
        if not client.model_exists(name):
            raise DetopsError(f"no registered model {name!r}")
        who = who or whoami()
        with client.lock(name):
            current = client.alias_version(name, CHAMPION)
            history = client.champion_history(name)
            remaining = list(history)
            while remaining and remaining[-1] == current:
                remaining.pop()
            if current is None or not remaining:
                raise DetopsError(
                    f"{name}: no previous champion to restore (champion {current}, history {history})",
                    exit_code=1,
                )
            restored = remaining[-1]
            challenger = client.alias_version(name, CHALLENGER)
            record: dict[str, Any] = {
                "action": "rollback",
                "model": name,
                "version": restored,
                "decision": "rolled back",
                "when": _now(),
                "who": who,
                "why": f"rollback requested: champion v{current} replaced by the previous champion v{restored}",
                "previous_champion": current,
            }
            try:
                audit_run = client.write_audit(record)
                client.set_version_tags(
                    name,
                    current,
                    {T.DECISION: "rolled back", T.DECISION_WHEN: record["when"], T.DECISION_AUDIT: audit_run},
                )
                client.set_champion_history(name, remaining)
                new_challenger = _challenger_now(client, name, restored)
                if new_challenger != challenger:
                    client.set_alias(name, CHALLENGER, new_challenger)
                client.set_alias(name, CHAMPION, restored)  # last
            except BaseException:
                _restore(client, name, champion=current, challenger=challenger, history=history)
                raise
        return Decision(
            name, restored, "rollback", "rolled back", (), current, restored, audit_run, new_challenger
        )
