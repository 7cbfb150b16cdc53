"""Promotion, rollback, failure injection and racing promotions against a real ``mlflow server``.

Each test works on its own registered model (a fresh variant name), so the session's server is shared
safely. Versions are registered directly with the ``detops.*`` tags that ``register_run`` writes; the
end-to-end registration of a trained run lives in ``test_register.py``.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from detops.errors import DetopsError
from detops.registry import tags as T
from detops.registry.client import CHALLENGER, CHAMPION, RegistryClient, model_name
from detops.registry.gates import gate_latency
from detops.registry.policy import BACKENDS, Policy
from detops.registry.promote import challenger_for, promote, refresh_challenger, rollback


@pytest.fixture(scope="module")
def client(mlflow_server: Any) -> RegistryClient:
    return RegistryClient(tracking_uri=mlflow_server.url)


@pytest.fixture(scope="module")
def source_run(client: RegistryClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One run holding a stand-in model directory that every test version points at."""
    run_id = client.create_run(experiment="detops-registry-tests", run_name="source", tags={})
    model_dir = tmp_path_factory.mktemp("model")
    (model_dir / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    client.log_run_artifacts(run_id, model_dir, artifact_path="model")
    return run_id


def _variant() -> str:
    return f"test_{uuid.uuid4().hex[:10]}"


def _add(
    client: RegistryClient,
    run_id: str,
    variant: str,
    *,
    artifact_map: float = 0.30,
    checkpoint_map: float | None = None,
    latency: float = 10.0,
    valid: bool | None = True,
    challenger: bool = True,
) -> int:
    tags = {
        T.DATA_VALID: T.fmt_bool(valid),
        T.map_tag("ort"): T.fmt_float(artifact_map),
        T.MAP_CHECKPOINT: T.fmt_float(artifact_map if checkpoint_map is None else checkpoint_map),
        T.latency_tag("ort"): T.fmt_float(latency),
    }
    version = client.create_version(
        model_name(variant), source=f"runs:/{run_id}/model", run_id=run_id, tags=tags
    )
    if challenger:  # what register_run does right after create_version
        refresh_challenger(client, model_name(variant))
    return version


def _promoted(client: RegistryClient, run_id: str, variant: str, *maps: float) -> list[int]:
    """A version per artifact mAP in ``maps``, each promoted in turn (each a champion once)."""
    versions = []
    for map_ in maps:
        versions.append(_add(client, run_id, variant, artifact_map=map_))
        assert promote(variant, policy=POLICY, client=client).champion == versions[-1]
    return versions


def _aliases(client: RegistryClient, variant: str) -> tuple[int | None, int | None]:
    name = model_name(variant)
    return client.alias_version(name, CHAMPION), client.alias_version(name, CHALLENGER)


POLICY = Policy(map_tolerance=0.01, max_accuracy_drop=0.02, latency_budget_ms=50.0)


@pytest.mark.parametrize(
    ("versions", "champion", "expected"),
    [
        ([], None, None),  # no versions
        ([(1, None)], None, 1),  # registered, not judged, no champion
        ([(1, "promoted")], 1, None),  # the only version is the champion
        ([(1, "promoted"), (2, "promoted")], 2, None),  # a former champion is no candidate
        ([(1, "promoted"), (2, "rejected")], 1, 2),  # a rejected version stays challenger
        ([(1, "promoted"), (2, "rejected"), (3, None)], 1, 3),  # ... until a newer one is registered
        ([(1, "promoted"), (2, "rejected"), (3, "promoted")], 3, 2),  # the promoted one loses challenger
        ([(1, "promoted"), (2, "rolled back")], 1, None),  # a version taken out of service is no candidate
        ([(3, None), (1, "promoted"), (2, "rejected")], 1, 3),  # order of the input does not matter
        ([(1, None), (2, None)], 2, 1),  # a champion without a decision tag (set by hand) is still excluded
    ],
)
def test_challenger_for(
    versions: list[tuple[int, str | None]], champion: int | None, expected: int | None
) -> None:
    assert challenger_for(versions, champion) == expected


def test_aliases_through_register_reject_and_promote(client: RegistryClient, source_run: str) -> None:
    """champion = the version in service; challenger = the newest candidate that is not champion."""
    variant = _variant()
    v1 = _add(client, source_run, variant)
    assert _aliases(client, variant) == (None, v1)  # registered, not judged: challenger
    assert promote(variant, policy=POLICY, client=client).decision == "promoted"
    assert _aliases(client, variant) == (v1, None)  # the promoted version loses challenger
    assert client.get_version(model_name(variant), v1).aliases == (CHAMPION,)
    v2 = _add(client, source_run, variant, latency=500.0)  # too slow
    assert _aliases(client, variant) == (v1, v2)
    assert promote(variant, policy=POLICY, client=client).decision == "rejected"
    assert _aliases(client, variant) == (v1, v2)  # the rejected one stays challenger, champion stays
    v3 = _add(client, source_run, variant, artifact_map=0.35)
    assert _aliases(client, variant) == (v1, v3)
    decision = promote(variant, policy=POLICY, client=client)
    assert (decision.decision, decision.champion, decision.challenger) == ("promoted", v3, v2)
    assert _aliases(client, variant) == (v3, v2)  # v2: the newest candidate that is not champion
    back = rollback(variant, client=client)
    assert (back.champion, back.challenger) == (v1, v2)  # v3 was taken out of service: no candidate
    assert _aliases(client, variant) == (v1, v2)


def test_first_promotion_records_tags_and_audit(client: RegistryClient, source_run: str) -> None:
    variant = _variant()
    v1 = _add(client, source_run, variant)
    decision = promote(variant, policy=POLICY, client=client, who="tester@host")
    assert (decision.action, decision.decision, decision.version, decision.champion) == (
        "promote",
        "promoted",
        v1,
        v1,
    )
    assert decision.previous_champion is None
    assert _aliases(client, variant) == (v1, None)
    tags = client.get_version(model_name(variant), v1).tags
    assert tags[T.DECISION] == "promoted" and tags[T.DECISION_WHO] == "tester@host"
    # the policy it was judged under, as canonical JSON (sorted keys: one policy, one string)
    assert json.loads(tags[T.DECISION_POLICY]) == POLICY.to_dict()
    assert list(json.loads(tags[T.DECISION_POLICY])) == sorted(POLICY.to_dict())
    assert tags[T.gate_tag("latency", "passed")] == "true"
    assert float(tags[T.gate_tag("latency", "value")]) == 10.0
    assert float(tags[T.gate_tag("latency", "threshold")]) == 50.0
    (record,) = client.audit_records(model_name(variant))
    assert record["action"] == "promote" and record["decision"] == "promoted"
    assert record["who"] == "tester@host" and record["previous_champion"] is None
    assert record["champion_reference"] == "no champion"
    assert record["when"] and record["why"] == "every gate passed"
    assert [g["name"] for g in record["gates"]] == ["data_valid", "map", "accuracy_drop", "latency"]
    assert client.champion_history(model_name(variant)) == [v1]
    # every gate's verdict as tags and in the audit record, the time in UTC
    latency = gate_latency(10.0, 50.0)
    assert tags[T.gate_tag("latency", "detail")] == latency.detail
    assert record["gates"][3] == {
        "name": "latency",
        "passed": True,
        "value": 10.0,
        "threshold": 50.0,
        "detail": latency.detail,
    }
    assert tags[T.DECISION_WHEN] == record["when"] and record["when"].endswith("+00:00")


@pytest.mark.parametrize(
    ("gate", "figures"),
    [
        # each gate's rule is tested in test_gates.py; two of them through a promotion by default
        pytest.param("data_valid", {"valid": False}, marks=pytest.mark.slow),
        ("map", {"artifact_map": 0.28, "checkpoint_map": 0.28}),  # champion 0.30 - tol 0.01 = 0.29
        pytest.param(
            "accuracy_drop", {"artifact_map": 0.31, "checkpoint_map": 0.34}, marks=pytest.mark.slow
        ),  # drop 0.03 > 0.02
        ("latency", {"latency": 50.5}),  # budget 50 ms
    ],
)
def test_each_gate_failing_keeps_the_champion(
    client: RegistryClient, source_run: str, gate: str, figures: dict[str, Any]
) -> None:
    variant = _variant()
    v1 = _add(client, source_run, variant)
    promote(variant, policy=POLICY, client=client)
    v2 = _add(client, source_run, variant, **figures)
    decision = promote(variant, policy=POLICY, client=client)
    assert decision.decision == "rejected" and not decision.passed
    assert [g.name for g in decision.gates if not g.passed] == [gate]
    assert _aliases(client, variant) == (v1, v2)  # champion stays; the rejected one is the challenger
    tags = client.get_version(model_name(variant), v2).tags
    assert tags[T.DECISION] == "rejected" and tags[T.gate_tag(gate, "passed")] == "false"
    record = client.audit_records(model_name(variant))[-1]
    assert record["failed_gates"] == [gate] and record["policy"] == POLICY.to_dict()
    (failed,) = (g for g in decision.gates if not g.passed)
    assert record["why"] == f"failed gate(s): {failed.detail}"
    assert client.champion_history(model_name(variant)) == [v1]


def test_within_tolerance_passes_and_rollback_restores(client: RegistryClient, source_run: str) -> None:
    variant = _variant()
    name = model_name(variant)
    v1 = _add(client, source_run, variant)
    promote(variant, policy=POLICY, client=client)
    v2 = _add(client, source_run, variant, artifact_map=0.295)  # within the 0.01 tolerance
    assert promote(variant, policy=POLICY, client=client).decision == "promoted"
    assert _aliases(client, variant) == (v2, None)
    back = rollback(variant, client=client, who="ops@host")
    assert (back.champion, back.previous_champion, back.decision) == (v1, v2, "rolled back")
    assert _aliases(client, variant) == (v1, None)  # the rolled-back version is no candidate
    assert client.champion_history(name) == [v1]
    record = client.audit_records(name)[-1]
    assert (record["action"], record["version"], record["previous_champion"], record["who"]) == (
        "rollback",
        v1,
        v2,
        "ops@host",
    )
    assert client.get_version(name, v2).tags[T.DECISION] == "rolled back"
    with pytest.raises(DetopsError, match="no previous champion"):
        rollback(variant, client=client)
    assert _aliases(client, variant)[0] == v1


def test_promote_given_version_and_missing_things(client: RegistryClient, source_run: str) -> None:
    variant = _variant()
    with pytest.raises(DetopsError, match="no registered model"):
        promote(variant, client=client)
    v1 = _add(client, source_run, variant)
    _add(client, source_run, variant, latency=500.0)  # v2, newest, too slow
    assert promote(variant, policy=POLICY, version=v1, client=client).champion == v1
    with pytest.raises(DetopsError, match="no version 99"):
        promote(variant, policy=POLICY, version=99, client=client)


class _Boom(RuntimeError):
    pass


class FailingClient(RegistryClient):
    """A real client that raises at one chosen step (the server stays real)."""

    def __init__(self, *, tracking_uri: str, fail_at: str) -> None:
        super().__init__(tracking_uri=tracking_uri)
        self.fail_at = fail_at

    def _maybe_fail(self, step: str) -> None:
        if step == self.fail_at:
            self.fail_at = ""  # once: the restore path must be able to use the same step
            raise _Boom(f"injected failure at {step}")

    def write_audit(self, record: dict[str, Any]) -> str:
        self._maybe_fail("write_audit")
        return super().write_audit(record)

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        self._maybe_fail("set_version_tags")
        super().set_version_tags(name, version, tags)

    def set_champion_history(self, name: str, history: list[int]) -> None:
        self._maybe_fail("set_champion_history")
        super().set_champion_history(name, history)

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        self._maybe_fail({CHAMPION: "set_champion", CHALLENGER: "set_challenger"}[alias])
        super().set_alias(name, alias, version)
        if alias == CHAMPION:  # the server moved it, the answer never arrived (a timeout)
            self._maybe_fail("after_set_champion")


@pytest.mark.parametrize(
    "step",
    [
        pytest.param("write_audit", marks=pytest.mark.slow),
        pytest.param("set_version_tags", marks=pytest.mark.slow),
        pytest.param("set_champion_history", marks=pytest.mark.slow),
        pytest.param("set_challenger", marks=pytest.mark.slow),
        "set_champion",  # the last step: every earlier change is undone
        pytest.param("after_set_champion", marks=pytest.mark.slow),  # moved, then the call failed
    ],
)
def test_exception_midway_leaves_aliases_as_they_were(
    client: RegistryClient, source_run: str, mlflow_server: Any, step: str
) -> None:
    variant = _variant()
    name = model_name(variant)
    v1 = _add(client, source_run, variant)
    promote(variant, policy=POLICY, client=client)
    v2 = _add(client, source_run, variant, artifact_map=0.4, checkpoint_map=0.4)
    promote(variant, policy=Policy(latency_budget_ms=1.0), client=client)  # rejected: v2 is challenger
    v3 = _add(client, source_run, variant, artifact_map=0.5, checkpoint_map=0.5)
    assert _aliases(client, variant) == (v1, v3)  # registered, not judged: v3 is challenger
    failing = FailingClient(tracking_uri=mlflow_server.url, fail_at=step)
    with pytest.raises(_Boom):
        promote(variant, policy=POLICY, client=failing)
    assert _aliases(client, variant) == (v1, v3)
    assert client.champion_history(name) == [v1]
    assert not client.model_exists(f"lock--{name}")  # the lock was released
    # and the same promotion succeeds once nothing fails
    assert promote(variant, policy=POLICY, client=client).champion == v3
    assert _aliases(client, variant) == (v3, v2)


@pytest.mark.parametrize("step", [pytest.param("set_challenger", marks=pytest.mark.slow), "set_champion"])
def test_exception_midway_restores_an_absent_challenger(
    client: RegistryClient, source_run: str, mlflow_server: Any, step: str
) -> None:
    variant = _variant()
    name = model_name(variant)
    v1 = _add(client, source_run, variant)
    promote(variant, policy=POLICY, client=client)
    assert _aliases(client, variant) == (v1, None)
    # versions created without the alias (as by a detops that did not keep challenger)
    v2 = _add(client, source_run, variant, challenger=False)
    v3 = _add(client, source_run, variant, latency=500.0, challenger=False)
    assert _aliases(client, variant) == (v1, None)
    failing = FailingClient(tracking_uri=mlflow_server.url, fail_at=step)
    with pytest.raises(_Boom):  # the promotion points challenger at v3 before champion moves
        promote(variant, policy=POLICY, version=v2, client=failing)
    assert _aliases(client, variant) == (v1, None)  # still no challenger
    assert client.champion_history(name) == [v1]
    assert promote(variant, policy=POLICY, version=v2, client=client).decision == "promoted"
    assert _aliases(client, variant) == (v2, v3)


def test_a_champion_moved_outside_the_lock_stops_the_promotion(
    client: RegistryClient, source_run: str, mlflow_server: Any
) -> None:
    """Someone moves champion by hand while a promotion holds the lock: the promotion does not
    overwrite it blindly; it stops with one line, puts every alias back and records the abort."""
    variant = _variant()
    name = model_name(variant)
    (v1,) = _promoted(client, source_run, variant, 0.30)
    v2 = _add(client, source_run, variant)

    class MovedMeanwhile(RegistryClient):
        moved = False

        def set_champion_history(self, model: str, history: list[int]) -> None:
            super().set_champion_history(model, history)
            if not self.moved:  # once, by hand, from another client
                RegistryClient(tracking_uri=self.tracking_uri).set_alias(model, CHAMPION, v2)
                self.moved = True

    with pytest.raises(DetopsError) as info:
        promote(variant, policy=POLICY, client=MovedMeanwhile(tracking_uri=mlflow_server.url))
    assert str(info.value) == (
        f"{name}: champion moved from v{v1} to v{v2} during the promotion; nothing changed, run it again"
    )
    assert info.value.exit_code == 1
    assert _aliases(client, variant) == (v1, v2) and client.champion_history(name) == [v1]
    *_, judged, aborted = client.audit_records(name)  # the decision's record, then the abort's
    assert aborted["decision"] == "aborted" and aborted["why"] == f"DetopsError: {info.value}"
    assert set(aborted) == set(judged)  # the same fields, its own time among them
    assert aborted["when"] >= judged["when"] and aborted["when"].endswith("+00:00")


def test_racing_promotions_leave_one_consistent_champion(
    client: RegistryClient, source_run: str, mlflow_server: Any
) -> None:
    variant = _variant()
    name = model_name(variant)
    v1 = _add(client, source_run, variant, artifact_map=0.30)
    promote(variant, policy=POLICY, client=client)
    v2 = _add(client, source_run, variant, artifact_map=0.40)
    v3 = _add(client, source_run, variant, artifact_map=0.45)
    start = threading.Barrier(2)
    results: dict[int, Any] = {}

    def run(version: int) -> None:
        own = RegistryClient(tracking_uri=mlflow_server.url)  # one client per racer
        start.wait()
        try:
            results[version] = promote(variant, policy=POLICY, version=version, client=own)
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            results[version] = exc

    threads = [threading.Thread(target=run, args=(v,)) for v in (v2, v3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(not isinstance(r, Exception) for r in results.values()), results
    # Serialised, either order ends with v3 (0.45 beats 0.40; 0.40 is below 0.45 - 0.01 if v3 went first).
    # Unserialised, both would judge against v1 and the slower writer would win.
    assert _aliases(client, variant)[0] == v3
    history = client.champion_history(name)
    assert history[0] == v1 and history[-1] == v3
    promoted = [d for d in results.values() if d.decision == "promoted"]
    assert promoted and results[v3].decision == "promoted"
    # each promotion judged against the champion the previous one left behind
    for d in promoted:
        assert d.previous_champion == history[history.index(d.version) - 1]
    if results[v2].decision == "rejected":
        assert results[v2].previous_champion == v3 and history == [v1, v3]
        assert _aliases(client, variant) == (v3, v2)
    else:
        assert history == [v1, v2, v3]
        assert _aliases(client, variant) == (v3, None)


def test_lock_excludes_and_breaks_when_stale(client: RegistryClient, mlflow_server: Any) -> None:
    name = model_name(_variant())
    other = RegistryClient(tracking_uri=mlflow_server.url)
    with client.lock(name):
        with pytest.raises(DetopsError, match="still held"), other.lock(name, timeout=0.5, stale_after=3600):
            pass
        # a holder that looks dead (older than stale_after) is broken
        with other.lock(name, timeout=5, stale_after=0.0):
            assert client.model_exists(f"lock--{name}")
    assert not client.model_exists(f"lock--{name}")


def test_cli_promote_rollback_and_select(
    client: RegistryClient,
    source_run: str,
    mlflow_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    tmp_path: Any,
) -> None:
    import json

    from detops.cli import main
    from detops.settings import get_settings

    monkeypatch.setenv("DETOPS_MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("DETOPS_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        variant = _variant()
        v1 = _add(client, source_run, variant, artifact_map=0.30, latency=10.0)
        assert main(["promote", variant]) == 0
        v2 = _add(client, source_run, variant, artifact_map=0.35, latency=20.0)
        policy = tmp_path / "strict.yaml"
        policy.write_text("latency_budget_ms: 15\n")
        capsys.readouterr()
        assert main(["promote", variant, "--policy", str(policy), "--json"]) == 1  # too slow for 15 ms
        captured = capsys.readouterr().out
        out = json.loads(captured[captured.index("{") :])
        assert out["decision"] == "rejected" and out["champion"] == v1 and out["challenger"] == v2
        assert main(["promote", variant, "--version", str(v2)]) == 0
        capsys.readouterr()
        assert main(["select", "--latency-budget-ms", "1e9", "--backend", "ort", "--json"]) == 0
        captured = capsys.readouterr().out
        chosen = json.loads(captured[captured.index("{") :])
        assert any(p["name"] == model_name(variant) and p["version"] == v2 for p in chosen["champions"])
        assert main(["promote", variant, "--rollback"]) == 0
        assert _aliases(client, variant)[0] == v1
    finally:
        get_settings.cache_clear()


def _add_on(
    client: RegistryClient, run_id: str, variant: str, figures: dict[str, tuple[float, float]]
) -> int:
    """A version measured on the backends of ``figures`` ({backend: (artifact mAP, latency ms)}); its
    checkpoint's mAP is the first backend's."""
    tags = {T.DATA_VALID: "true", T.MAP_CHECKPOINT: T.fmt_float(next(iter(figures.values()))[0])}
    for backend, (map_, ms) in figures.items():
        tags[T.map_tag(backend)] = T.fmt_float(map_)
        tags[T.latency_tag(backend)] = T.fmt_float(ms)
    version = client.create_version(
        model_name(variant), source=f"runs:/{run_id}/model", run_id=run_id, tags=tags
    )
    refresh_challenger(client, model_name(variant))
    return version


def test_a_champion_without_a_figure_on_the_policy_backend_is_not_replaced(
    client: RegistryClient, source_run: str
) -> None:
    """Promoted on ORT, judged later by a policy on OpenVINO: the champion has no figure there, so no
    candidate can show it beats it; the map gate refuses rather than treat it as no champion."""
    variant = _variant()
    name = model_name(variant)
    v1 = _add_on(client, source_run, variant, {"ort": (0.30, 20.0)})
    assert promote(variant, policy=POLICY, client=client).champion == v1
    v2 = _add_on(client, source_run, variant, {"openvino": (0.90, 5.0), "ort": (0.90, 5.0)})
    on_openvino = Policy(
        backend="openvino", map_tolerance=0.01, max_accuracy_drop=0.02, latency_budget_ms=50.0
    )
    decision = promote(variant, policy=on_openvino, client=client)
    assert (decision.version, decision.decision) == (v2, "rejected")
    assert [g.name for g in decision.gates if not g.passed] == ["map"]
    assert client.alias_version(name, CHAMPION) == v1
    assert client.audit_records(name)[-1]["champion_reference"] == f"v{v1} mAP None"


# every backend a policy can name: slow (they run in mutation runs and `make test-all`)
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_promotion_and_selection_judge_the_backend_the_policy_names(
    client: RegistryClient, source_run: str, backend: str
) -> None:
    """Every figure a gate or the selection reads is the named backend's: another backend's better
    figures never promote a version, and a version without figures on it is refused on both gates."""
    from detops.registry.select import select

    variant = _variant()
    name = model_name(variant)
    other = next(b for b in BACKENDS if b != backend)
    policy = Policy(backend=backend, map_tolerance=0.01, max_accuracy_drop=0.02, latency_budget_ms=50.0)
    v1 = _add_on(client, source_run, variant, {backend: (0.30, 20.0), other: (0.10, 900.0)})
    first = promote(variant, policy=policy, client=client)
    assert first.decision == "promoted"
    gates = {g.name: g for g in first.gates}
    assert (gates["map"].value, gates["latency"].value, gates["latency"].threshold) == (0.30, 20.0, 50.0)

    worse = _add_on(client, source_run, variant, {backend: (0.28, 20.0), other: (0.90, 1.0)})
    refused = promote(variant, policy=policy, client=client)
    assert (refused.version, refused.decision) == (worse, "rejected")
    gates = {g.name: g for g in refused.gates}
    assert [g.name for g in refused.gates if not g.passed] == ["map"]
    assert (gates["map"].value, gates["map"].threshold) == (0.28, pytest.approx(0.29))
    assert gates["map"].detail == "candidate mAP 0.2800 is below champion 0.3000 - tolerance 0.0100 = 0.2900"

    slow = _add_on(client, source_run, variant, {backend: (0.31, 60.0), other: (0.31, 1.0)})
    refused = promote(variant, policy=policy, client=client)
    assert (refused.version, [g.name for g in refused.gates if not g.passed]) == (slow, ["latency"])
    assert {g.name: g.value for g in refused.gates}["latency"] == 60.0

    unmeasured = _add_on(client, source_run, variant, {other: (0.99, 1.0)})
    refused = promote(variant, policy=policy, client=client)
    assert refused.version == unmeasured and refused.decision == "rejected"
    assert {"map", "latency"} <= {g.name for g in refused.gates if not g.passed}
    details = [g.detail for g in refused.gates if not g.passed]
    assert client.audit_records(name)[-1]["why"] == "failed gate(s): " + "; ".join(details)
    assert len(details) >= 2  # so the separator shows
    assert client.alias_version(name, CHAMPION) == v1

    better = _add_on(client, source_run, variant, {backend: (0.35, 25.0)})
    assert promote(variant, policy=policy, client=client).champion == better

    class ThisModelOnly(RegistryClient):
        """The real registry, seen as holding this test's model alone (the server is shared by
        every test of the session, and by every mutant of a mutation run)."""

        def model_names(self) -> list[str]:
            return [n for n in super().model_names() if n == name]

    registry = ThisModelOnly(tracking_uri=client.tracking_uri)
    sel = select(budget_ms=50.0, backend=backend, client=registry)
    assert sel.best is not None and sel.best.name == name
    (mine,) = sel.champions
    assert (mine.version, mine.map, mine.latency_ms, mine.backend) == (better, 0.35, 25.0, backend)
    elsewhere = select(budget_ms=50.0, backend=other, client=registry)
    assert elsewhere.unmeasured == (f"{name}@v{better}",) and elsewhere.champions == ()


@pytest.mark.slow
def test_rollback_walks_back_a_history_of_four_champions(client: RegistryClient, source_run: str) -> None:
    variant = _variant()
    name = model_name(variant)
    versions = []
    for step in range(4):
        versions.append(_add(client, source_run, variant, artifact_map=0.30 + 0.01 * step))
        assert promote(variant, policy=POLICY, client=client).champion == versions[-1]
    candidate = _add(client, source_run, variant, latency=500.0)  # registered, never in service
    assert client.champion_history(name) == versions
    for expected in (versions[2], versions[1], versions[0]):
        current = client.alias_version(name, CHAMPION)
        back = rollback(variant, client=client, who="ops@host")
        assert (back.previous_champion, back.champion, back.version) == (current, expected, expected)
        assert back.challenger == candidate  # rolled-back versions are no candidates; the new one stays
        assert _aliases(client, variant) == (expected, candidate)
        assert client.champion_history(name) == versions[: versions.index(expected) + 1]
        assert client.get_version(name, current).tags[T.DECISION] == "rolled back"
        record = client.audit_records(name)[-1]
        assert (
            record["why"]
            == f"rollback requested: champion v{current} replaced by the previous champion v{expected}"
        )
    with pytest.raises(DetopsError) as exc:
        rollback(variant, client=client)
    assert (
        str(exc.value)
        == f"{name}: no previous champion to restore (champion {versions[0]}, history {versions[:1]})"
    )
    assert exc.value.exit_code == 1
    assert _aliases(client, variant) == (versions[0], candidate)
    # a champion re-promoted after a rollback is not restored twice in a row
    _add(client, source_run, variant, artifact_map=0.5)
    promote(variant, policy=POLICY, client=client)
    assert rollback(variant, client=client).champion == versions[0]


SECRET = "Pa55-not-for-logs-9f3e"


class _LeakyFailure(RuntimeError):
    pass


class LeakingClient(RegistryClient):
    """A real client whose third alias move fails with a message quoting its URI, credentials and
    all, the way MLflow's request errors quote the URL they called."""

    def __init__(self, *, tracking_uri: str) -> None:
        super().__init__(tracking_uri=tracking_uri)
        self.moves = 0

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        self.moves += 1
        if self.moves == 2:
            raise _LeakyFailure(
                f"API request to {self.tracking_uri}/api/2.0/mlflow/registered-models/alias failed"
            )
        super().set_alias(name, alias, version)


def test_no_secret_in_any_tag_audit_record_decision_or_log(
    client: RegistryClient,
    source_run: str,
    mlflow_server: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Credentials in the tracking URI (as a user may configure them) reach no version tag, audit
    record, decision, log line or CLI error line, through a promotion, a refusal, an aborted promotion
    and a rollback."""
    from detops.cli import main

    caplog.set_level("DEBUG")
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "false")  # restored afterwards
    host = mlflow_server.url.split("://", 1)[1]
    uri = f"http://detops-user:{SECRET}@{host}"  # the server has no auth: the credentials ride along unused
    secret_client = RegistryClient(tracking_uri=uri)
    variant = _variant()
    name = model_name(variant)
    v1 = _add(secret_client, source_run, variant)
    decisions = [promote(variant, policy=POLICY, client=secret_client, who="ops")]
    _add(secret_client, source_run, variant, latency=500.0)
    decisions.append(promote(variant, policy=POLICY, client=secret_client, who="ops"))
    v3 = _add(secret_client, source_run, variant, artifact_map=0.4)
    with pytest.raises(_LeakyFailure):
        promote(variant, policy=POLICY, client=LeakingClient(tracking_uri=uri), who="ops")
    decisions.append(promote(variant, policy=POLICY, version=v3, client=secret_client, who="ops"))
    decisions.append(rollback(variant, client=secret_client, who="ops"))
    assert client.alias_version(name, CHAMPION) == v1

    records = client.audit_records(name)
    # the aborted promotion wrote its record first, then the abort
    decided = ["promoted", "rejected", "promoted", "aborted", "promoted", "rolled back"]
    assert [r["decision"] for r in records] == decided
    assert records[3]["why"].startswith(f"_LeakyFailure: API request to http://{host}/api/2.0/")
    assert records[0]["tracking_uri_kind"] == "http"
    seen = [repr(records), repr(decisions), caplog.text, *capsys.readouterr()]
    seen += [repr(v.tags) for v in client.versions(name)]
    seen += [repr(client.model_tags(name))]
    assert all(SECRET not in text for text in seen)
    assert secret_client.display_uri == mlflow_server.url

    # and the CLI's error line for a failure that quotes the URI
    import detops.registry.promote as promote_module

    class Failing(RuntimeError):
        pass

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise Failing(f"cannot reach {uri}/api/2.0/mlflow")

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(promote_module, "rollback", fail)
        mp.setenv("DETOPS_MLFLOW_TRACKING_URI", uri)
        from detops.settings import get_settings

        get_settings.cache_clear()
        try:
            code = main(["promote", variant, "--rollback"])
        finally:
            get_settings.cache_clear()
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(
        f"error: unexpected Failing: cannot reach http://{host}/api/2.0/mlflow"
    )
    assert SECRET not in err


@pytest.mark.slow
def test_rollback_repoints_challenger_when_the_restored_version_was_rejected_since(
    client: RegistryClient, source_run: str
) -> None:
    """A former champion judged again and rejected is the challenger; restored by a rollback, it is
    champion and so no longer challenger, and the alias goes away (no other candidate)."""
    variant = _variant()
    name = model_name(variant)
    v1, v2 = _promoted(client, source_run, variant, 0.30, 0.40)
    again = promote(variant, policy=Policy(latency_budget_ms=1.0), version=v1, client=client)
    assert again.decision == "rejected" and _aliases(client, variant) == (v2, v1)
    back = rollback(variant, client=client)
    assert (back.action, back.decision, back.champion, back.challenger) == (
        "rollback",
        "rolled back",
        v1,
        None,
    )
    assert _aliases(client, variant) == (v1, None)
    assert client.champion_history(name) == [v1]


@pytest.mark.slow
@pytest.mark.parametrize("step", ["set_champion_history", "set_champion", "after_set_champion"])
def test_a_rollback_failing_midway_leaves_aliases_and_history_as_they_were(
    client: RegistryClient, source_run: str, mlflow_server: Any, step: str
) -> None:
    variant = _variant()
    name = model_name(variant)
    v1, v2 = _promoted(client, source_run, variant, 0.30, 0.40)
    v3 = _add(client, source_run, variant, latency=500.0)  # registered, not judged: challenger
    assert _aliases(client, variant) == (v2, v3)
    with pytest.raises(_Boom):
        rollback(variant, client=FailingClient(tracking_uri=mlflow_server.url, fail_at=step))
    assert _aliases(client, variant) == (v2, v3)
    assert client.champion_history(name) == [v1, v2]
    assert rollback(variant, client=client).champion == v1  # and it works once nothing fails


@pytest.mark.slow
def test_rollback_points_challenger_at_a_candidate_the_alias_had_missed(
    client: RegistryClient, source_run: str
) -> None:
    variant = _variant()
    v1, v2 = _promoted(client, source_run, variant, 0.30, 0.40)
    v3 = _add(client, source_run, variant, challenger=False)  # as by a detops that did not keep challenger
    assert _aliases(client, variant) == (v2, None)
    back = rollback(variant, client=client)
    assert (back.champion, back.challenger) == (v1, v3)
    assert _aliases(client, variant) == (v1, v3)


def test_refresh_excludes_a_champion_set_by_hand(client: RegistryClient, source_run: str) -> None:
    """A champion alias moved by hand (no decision tag) is still no challenger: neither when
    re-pointing challenger nor after a promotion that keeps it."""
    variant = _variant()
    name = model_name(variant)
    v1 = _add(client, source_run, variant)
    v2 = _add(client, source_run, variant)
    client.set_alias(name, CHAMPION, v2)
    assert refresh_challenger(client, name) == v1
    assert _aliases(client, variant) == (v2, v1)
    decision = promote(variant, policy=Policy(latency_budget_ms=1.0), version=v1, client=client)
    assert (decision.version, decision.decision, decision.challenger) == (v1, "rejected", v1)
    assert _aliases(client, variant) == (v2, v1)
