"""The one module that talks to MLflow's model registry.

Conventions (kept here, so every other module speaks plain values):

* registered model per variant: ``detops-<variant>``; versions carry ``detops.*`` tags (see
  :mod:`detops.registry.register` for the list) and point at a pyfunc detector logged with MLflow 3's
  model logging (:mod:`detops.registry.pyfunc`; the ONNX file is among its artifacts);
* aliases ``champion`` (the version in service) and ``challenger`` (the newest candidate that is not
  champion: registered and not yet judged, or rejected; rule in :mod:`detops.registry.promote`); the
  deprecated stages are never used;
* the champion history, oldest first, lives in the registered-model tag ``detops.champion_history``
  (a JSON list of version numbers) so ``rollback`` knows what to restore;
* every decision (promotion, rejection, rollback) is an **audit record**: one MLflow run in the
  experiment ``detops-audit`` whose tags hold the summary (``detops.audit.*``) and whose artifact
  ``audit.json`` holds the whole record (when, who, what, why, previous champion, each gate);
* concurrent promotions of one model are serialised by a **registry lock**: the registered model
  ``lock--detops-<variant>``, created atomically (the server refuses a second one with the same
  name) and deleted on release. A lock older than ``stale_after`` seconds is assumed to belong to a
  crashed process and is broken.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detops.errors import DetopsError
from detops.tracking.runs import get_or_create_experiment, local_artifact_root

MODEL_PREFIX = "detops-"
LOCK_PREFIX = "lock--"
CHAMPION, CHALLENGER = "champion", "challenger"
AUDIT_EXPERIMENT = "detops-audit"
HISTORY_TAG = "detops.champion_history"
AUDIT_ARTIFACT = "audit.json"


def model_name(variant: str) -> str:
    """The registered model of a variant: ``detops-<variant>``."""
    return f"{MODEL_PREFIX}{variant}"


def variant_of(name: str) -> str:
    """Inverse of :func:`model_name`; ``DetopsError`` for a name that is not ours."""
    if not name.startswith(MODEL_PREFIX):
        raise DetopsError(
            f"registered model {name!r} is not a detops model (expected {MODEL_PREFIX}<variant>)"
        )
    return name[len(MODEL_PREFIX) :]


def whoami() -> str:
    """``user@host`` of this process (the audit record's "who")."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Version:
    """One registered model version: its number, tags, aliases, run and source URI."""

    name: str
    version: int
    tags: dict[str, str]
    aliases: tuple[str, ...]
    run_id: str | None
    source: str


def _is_code(exc: Exception, *codes: str) -> bool:
    return getattr(exc, "error_code", None) in codes


@contextlib.contextmanager
def open_registry(settings: Any = None, *, client: RegistryClient | None = None) -> Iterator[RegistryClient]:
    """A client for the settings' tracking store (``client`` when the caller has one), with the
    settings' credentials in MLflow's environment for the duration of the block (see
    :func:`detops.tracking.tracking_env`). Every library function that talks to the registry runs
    inside one, so a flow's task on a worker authenticates as the CLI does."""
    from detops.settings import get_settings
    from detops.tracking.credentials import tracking_env

    settings = settings or get_settings()
    with tracking_env(settings) as uri:
        yield client or RegistryClient(tracking_uri=uri)


class RegistryClient:
    """Thin, typed access to the registry and the audit log of one tracking server.

    ``tracking_uri``: default the settings' ``mlflow_tracking_uri`` (SQLite under ``.detops/`` unless
    configured). Credentials for a remote server come from the settings via MLflow's environment
    variables, set by the tracking stage; nothing here reads or logs them.
    """

    def __init__(self, *, tracking_uri: str | None = None) -> None:
        from mlflow import MlflowClient

        from detops.settings import get_settings
        from detops.tracking.credentials import keep_credentials_off_stdout

        settings = get_settings()
        if tracking_uri is None:
            tracking_uri = settings.mlflow_tracking_uri
        self.tracking_uri = tracking_uri
        keep_credentials_off_stdout(tracking_uri)
        # On a local store, experiments this client creates keep artifacts under <home>/mlartifacts
        # (as training runs do), never in the working directory.
        self._artifact_location = local_artifact_root(
            settings.model_copy(update={"mlflow_tracking_uri": tracking_uri})
        )
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        # MlflowClient GETs the registered model before each write to it or to its versions, to refuse
        # prompts (mlflow.prompt.is_prompt); detops' models are never prompts, so the writes below
        # go to MLflow's own registry client: one request per tag or alias instead of two (a
        # promotion writes about twenty). The public client when an MLflow lacks that method.
        self._writes = getattr(self._client, "_get_registry_client", lambda: self._client)()

    # -- models and versions ---------------------------------------------------------------------

    def ensure_model(self, name: str, *, description: str = "") -> None:
        """Create the registered model ``name`` unless it exists."""
        from mlflow.exceptions import MlflowException

        try:
            self._client.create_registered_model(name, description=description or None)
        except MlflowException as exc:
            if not _is_code(exc, "RESOURCE_ALREADY_EXISTS"):
                raise

    def create_version(
        self, name: str, *, source: str, run_id: str | None, tags: dict[str, str], model_id: str | None = None
    ) -> int:
        """A new version of ``name`` (created when missing) pointing at ``source``; returns its number."""
        self.ensure_model(name)
        mv = self._client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id)
        return int(mv.version)

    def _version(self, mv: Any) -> Version:
        return Version(
            name=mv.name,
            version=int(mv.version),
            tags=dict(mv.tags or {}),
            aliases=tuple(mv.aliases or ()),
            run_id=mv.run_id or None,
            source=mv.source,
        )

    def get_version(self, name: str, version: int) -> Version:
        """Version ``version`` of ``name``; ``DetopsError`` when either does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return self._version(self._client.get_model_version(name, str(version)))
        except MlflowException as exc:
            if _is_code(exc, "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise DetopsError(f"registered model {name!r} has no version {version}") from None
            raise

    def versions(self, name: str) -> list[Version]:
        """Every version of ``name``, oldest first (empty when the model does not exist)."""
        found = self._client.search_model_versions(f"name = '{name}'")
        return sorted((self._version(mv) for mv in found), key=lambda v: v.version)

    def latest_version(self, name: str) -> int | None:
        """The highest version number of ``name``, or ``None``."""
        versions = self.versions(name)
        return versions[-1].version if versions else None

    def model_exists(self, name: str) -> bool:
        """Whether the registered model ``name`` exists."""
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(name)
        except MlflowException as exc:
            if _is_code(exc, "RESOURCE_DOES_NOT_EXIST"):
                return False
            raise
        return True

    def model_names(self) -> list[str]:
        """Names of every detops registered model (``detops-*``), sorted."""
        names: list[str] = []
        token: str | None = None
        while True:
            page = self._client.search_registered_models(
                filter_string=f"name LIKE '{MODEL_PREFIX}%'", max_results=100, page_token=token
            )
            names.extend(m.name for m in page)
            token = page.token
            if not token:
                break
        return sorted(names)

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        """Set several tags on one version."""
        for key, value in tags.items():
            self._writes.set_model_version_tag(name, str(version), key, value)

    def model_tags(self, name: str) -> dict[str, str]:
        """Tags of the registered model ``name``."""
        return dict(self._client.get_registered_model(name).tags or {})

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """Set one tag on the registered model ``name``."""
        self._writes.set_registered_model_tag(name, key, value)

    # -- aliases ---------------------------------------------------------------------------------

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at, or ``None`` when unset."""
        aliases = dict(self._client.get_registered_model(name).aliases or {})
        value = aliases.get(alias)
        return int(value) if value is not None else None

    def set_alias(self, name: str, alias: str, version: int | None) -> None:
        """Point ``alias`` at ``version``; ``None`` removes the alias."""
        from mlflow.exceptions import MlflowException

        if version is None:
            try:
                self._writes.delete_registered_model_alias(name, alias)
            except MlflowException as exc:
                if not _is_code(exc, "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise
            return
        self._writes.set_registered_model_alias(name, alias, str(version))

    def champion_history(self, name: str) -> list[int]:
        """Champion versions, oldest first (the last one is the current champion)."""
        raw = self.model_tags(name).get(HISTORY_TAG)
        return [int(v) for v in json.loads(raw)] if raw else []

    def set_champion_history(self, name: str, history: list[int]) -> None:
        """Replace the champion history (kept short enough for a tag value)."""
        self.set_model_tag(name, HISTORY_TAG, json.dumps(history[-200:]))

    # -- audit -----------------------------------------------------------------------------------

    def _audit_experiment(self) -> str:

        return get_or_create_experiment(
            self._client, AUDIT_EXPERIMENT, artifact_location=self._artifact_location
        )

    def write_audit(self, record: dict[str, Any]) -> str:
        """Store one audit record as a run of ``detops-audit`` (summary tags + ``audit.json``).

        ``record`` needs ``action``, ``model`` and ``version``; returns the audit run id.
        """
        tags = {
            f"detops.audit.{key}": str(record.get(key, ""))
            for key in ("action", "model", "version", "decision", "who", "when", "previous_champion")
        }
        run = self._client.create_run(
            self._audit_experiment(),
            run_name=f"{record['action']} {record['model']} v{record['version']}",
            tags=tags,
        )
        self._client.log_dict(run.info.run_id, record, AUDIT_ARTIFACT)
        self._client.set_terminated(run.info.run_id)
        return str(run.info.run_id)

    def audit_records(self, name: str) -> list[dict[str, Any]]:
        """Every audit record of model ``name``, oldest first."""
        exp = self._client.get_experiment_by_name(AUDIT_EXPERIMENT)
        if exp is None:
            return []
        runs = self._client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`detops.audit.model` = '{name}'",
            order_by=["attributes.start_time ASC"],
            max_results=10000,
        )
        records = []
        for run in runs:
            records.append(self.load_artifact_json(run.info.run_id, AUDIT_ARTIFACT))
        return records

    def load_artifact_json(self, run_id: str, path: str) -> Any:
        """A JSON artifact of a run, parsed."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = self._client.download_artifacts(run_id, path, tmp)
            return json.loads(Path(local).read_text())

    # -- lock ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(
        self, name: str, *, timeout: float = 300.0, stale_after: float = 900.0, poll: float = 0.2
    ) -> Iterator[None]:
        """Hold the registry lock of model ``name`` for the block (see the module docstring).

        Waits up to ``timeout`` seconds, then raises ``DetopsError``. The server's uniqueness of
        registered-model names makes the acquisition atomic across processes and machines.
        """
        from mlflow.exceptions import MlflowException

        lock_name = f"{LOCK_PREFIX}{name}"
        token = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._client.create_registered_model(
                    lock_name,
                    tags={"owner": whoami(), "token": token, "since": f"{time.time():.3f}"},
                    description=f"promotion lock of {name}; delete it if its holder died",
                )
                break
            except MlflowException as exc:
                if not _is_code(exc, "RESOURCE_ALREADY_EXISTS"):
                    raise
            self._break_if_stale(lock_name, stale_after)
            if time.monotonic() > deadline:
                raise DetopsError(
                    f"registry lock {lock_name!r} still held after {timeout:.0f} s; "
                    "another promotion is running (or delete the lock model if it died)",
                    exit_code=1,
                )
            time.sleep(poll)
        try:
            yield
        finally:
            self._release(lock_name, token)

    def _break_if_stale(self, lock_name: str, stale_after: float) -> None:
        from mlflow.exceptions import MlflowException

        try:
            tags = dict(self._client.get_registered_model(lock_name).tags or {})
        except MlflowException:
            return  # released meanwhile
        since = float(tags.get("since", "0") or 0)
        if time.time() - since > stale_after:
            with contextlib.suppress(MlflowException):
                self._writes.delete_registered_model(lock_name)

    def _release(self, lock_name: str, token: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            tags = dict(self._client.get_registered_model(lock_name).tags or {})
        except MlflowException:
            return
        if tags.get("token") == token:
            with contextlib.suppress(MlflowException):
                self._writes.delete_registered_model(lock_name)

    # -- artifacts -------------------------------------------------------------------------------

    def download_version(self, name: str, version: int, dst: Path) -> Path:
        """Download the model files of a version into ``dst`` (created); returns ``dst``."""
        import mlflow.artifacts

        dst.mkdir(parents=True, exist_ok=True)
        uri = self._client.get_model_version_download_uri(name, str(version))
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri
        )
        return dst

    def log_detector_model(
        self, *, run_id: str, onnx_path: Path, example_image: bytes
    ) -> tuple[str, str | None]:
        """Log the pyfunc detector of an ONNX file (:mod:`detops.registry.pyfunc`: encoded images in,
        detections on the original images out, the ONNX file among its artifacts) into run ``run_id``
        with MLflow 3's model logging, its signature and an input example made of ``example_image``
        (one small encoded image); returns ``(model_uri, model_id)``."""
        import mlflow
        import mlflow.pyfunc

        from detops.registry.pyfunc import model_kwargs

        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model", **model_kwargs(onnx_path, example_image=example_image)
            )
        return str(info.model_uri), getattr(info, "model_id", None)

    def create_run(self, *, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        """A new run in ``experiment`` (created when missing); returns its id (left running)."""

        exp_id = get_or_create_experiment(self._client, experiment, artifact_location=self._artifact_location)
        return str(self._client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id)

    @property
    def display_uri(self) -> str:
        """The tracking URI without any ``user:password@`` part, for messages."""
        from detops.tracking.credentials import without_userinfo

        return without_userinfo(self.tracking_uri)

    def run_experiment_id(self, run_id: str) -> str:
        """The experiment id of run ``run_id``."""
        return str(self._client.get_run(run_id).info.experiment_id)

    def run_tags(self, run_id: str) -> dict[str, str]:
        """Tags of run ``run_id``."""
        return dict(self._client.get_run(run_id).data.tags)

    def download_run_artifact(self, run_id: str, path: str, dst: Path) -> Path:
        """Download one artifact of a run into ``dst`` (keeping its relative path); returns the file."""
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self._client.download_artifacts(run_id, path, str(dst)))

    def run_exists(self, run_id: str) -> bool:
        """Whether ``run_id`` names a run on this server. Any other refusal (no or wrong credentials,
        a server error) is a one-line ``DetopsError``, not "no such run"."""
        from mlflow.exceptions import MlflowException

        from detops.tracking.credentials import without_userinfo

        try:
            self._client.get_run(run_id)
        except MlflowException as exc:
            if _is_code(exc, "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return False
            first = str(exc.message).strip().splitlines()[0] if str(exc.message).strip() else ""
            raise DetopsError(
                without_userinfo(f"MLflow server {self.display_uri}: run {run_id}: {first}")
            ) from None
        return True

    def log_run_artifacts(self, run_id: str, local_dir: Path, *, artifact_path: str | None = None) -> None:
        """Upload a directory's files into run ``run_id``."""
        self._client.log_artifacts(run_id, str(local_dir), artifact_path=artifact_path)

    def log_run_file(self, run_id: str, path: Path, *, artifact_path: str | None = None) -> None:
        """Upload one file into run ``run_id``."""
        self._client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def set_run_terminated(self, run_id: str) -> None:
        """Mark run ``run_id`` finished."""
        self._client.set_terminated(run_id)

    def log_run_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set ``tags`` on run ``run_id``."""
        from mlflow.entities import RunTag

        self._client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def newest_run_tags(self, experiment: str, tags: dict[str, str]) -> dict[str, str] | None:
        """Tags of the newest finished run of ``experiment`` carrying every tag in ``tags``; None when
        the experiment or such a run does not exist."""
        found = self._client.get_experiment_by_name(experiment)
        if found is None:
            return None
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self._client.search_runs(
            [found.experiment_id],
            filter_string=f"{where} and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return dict(runs[0].data.tags) if runs else None
