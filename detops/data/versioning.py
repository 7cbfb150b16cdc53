"""Dataset versioning with DVC: ``data.dvc`` at the project root tracks ``<project root>/data``.

``version_dataset`` validates the dataset first (an invalid one is refused with the validation
report), runs ``dvc add data`` and returns the dataset version, the DVC directory hash (the md5 in
``data.dvc`` without its ``.dir`` suffix); with ``push=True`` it pushes to the remote described by
``Settings``. ``pull_dataset`` configures the same remote and restores ``data/`` byte for byte, e.g. in
a fresh clone. ``pull_version`` materialises any pushed version by its hash alone, with no project or
``data.dvc`` of the pusher's: what a worker on another machine does with the version a flow run was
given (under ``DETOPS_HOME/datasets/<version>``, reused when present; a directory appears there only
once complete).

Only ``<project root>/data`` is accepted as the dataset root: ``data.dvc`` is committed and names
that path, so a dataset elsewhere is refused with a message saying to copy it there (copying silently
could double disk use, and a link would make DVC track the link instead of the bytes).

The remote is written to ``.dvc/config.local`` (git-ignored by ``dvc init``) as remote ``detops``, so
an endpoint and credentials never land in git; nothing here prints credentials.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detops.errors import DetopsError
from detops.settings import Settings

if TYPE_CHECKING:
    from detops.data.validate import ValidationReport

REMOTE_NAME = "detops"
DATA_DIR = "data"
VERSION_RE = re.compile(r"^[0-9a-f]{32}$")

log = logging.getLogger(__name__)


class InvalidDatasetError(DetopsError):
    """The dataset failed validation; ``report`` holds the failures for the caller to show."""

    def __init__(self, message: str, *, report: ValidationReport) -> None:
        super().__init__(message, exit_code=1)
        self.report = report


@dataclass(frozen=True)
class DatasetVersion:
    """A tracked dataset: its DVC directory hash, file count, the ``.dvc`` file and where it was pushed."""

    md5: str
    files: int
    dvc_file: Path
    remote: str | None
    pushed: int

    def to_dict(self) -> dict[str, Any]:
        """``{"version", "remote", "files"}``: what names this version anywhere (no local path)."""
        return {"version": self.md5, "remote": self.remote, "files": self.files}


def remote_url(settings: Settings) -> str:
    """The DVC remote URL ``settings`` describes: the local directory, or ``s3://bucket/prefix``."""
    return settings.s3_url if settings.dvc_remote == "s3" else str(Path(settings.dvc_local_remote).resolve())


def ensure_bucket(settings: Settings) -> bool:
    """Create the S3 bucket of ``settings`` when it is missing; True when it was created."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"S3 bucket {settings.s3_bucket!r} at {_endpoint(settings)}"
    client = boto3.client("s3", **_boto_args(settings))
    try:
        client.head_bucket(Bucket=settings.s3_bucket)
        return False
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise DetopsError(f"{where}: {code}") from None
    except BotoCoreError as exc:  # unreachable endpoint, missing credentials, ...
        raise DetopsError(f"{where}: {exc}") from None
    args: dict[str, Any] = {"Bucket": settings.s3_bucket}
    if settings.s3_region and settings.s3_region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": settings.s3_region}
    try:
        client.create_bucket(**args)
    except (ClientError, BotoCoreError) as exc:
        raise DetopsError(f"cannot create {where}: {exc}") from None
    return True


def _endpoint(settings: Settings) -> str:
    return settings.s3_endpoint_url or "AWS"


def _boto_args(settings: Settings) -> dict[str, Any]:
    from botocore.config import Config

    # an unreachable endpoint is reported after two tries, not botocore's default five with backoff;
    # the flow's tasks retry transient failures themselves
    args: dict[str, Any] = {
        "region_name": settings.s3_region,
        "config": Config(connect_timeout=10, retries={"max_attempts": 2, "mode": "standard"}),
    }
    if settings.s3_endpoint_url:
        args["endpoint_url"] = settings.s3_endpoint_url
    if settings.aws_access_key_id is not None and settings.aws_secret_access_key is not None:
        args["aws_access_key_id"] = settings.aws_access_key_id.get_secret_value()
        args["aws_secret_access_key"] = settings.aws_secret_access_key.get_secret_value()
    return args


@contextmanager
def _repo(root: Path) -> Iterator[Any]:
    """The DVC repository at ``root`` (a one-line error when there is none)."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    if not (root / ".dvc").is_dir():
        raise DetopsError(f"no DVC repository at {root}: run `dvc init` there (or set DETOPS_PROJECT_ROOT)")
    try:
        repo = Repo(str(root))
    except NotDvcRepoError as exc:
        raise DetopsError(f"no DVC repository at {root}: {exc}") from None
    try:
        yield repo
    finally:
        repo.close()


@contextmanager
def _dvc_errors(what: str) -> Iterator[None]:
    """Turn DVC's exceptions (DownloadError, UploadError, CheckoutError, ...) into one-line errors."""
    from dvc.exceptions import DvcException

    try:
        yield
    except DvcException as exc:
        raise DetopsError(f"{what} failed: {str(exc).splitlines()[0]}") from None


def configure_remote(repo: Any, settings: Settings) -> str:
    """Write remote ``detops`` (the default remote) into ``.dvc/config.local``; return its URL.

    For S3 the bucket is created when missing. Credentials, when set in ``settings``, go only into
    this git-ignored file.
    """
    url = remote_url(settings)
    remote: dict[str, Any] = {"url": url}
    if settings.dvc_remote == "s3":
        ensure_bucket(settings)
        if settings.s3_endpoint_url:
            remote["endpointurl"] = settings.s3_endpoint_url
        remote["region"] = settings.s3_region
        if settings.aws_access_key_id is not None and settings.aws_secret_access_key is not None:
            remote["access_key_id"] = settings.aws_access_key_id.get_secret_value()
            remote["secret_access_key"] = settings.aws_secret_access_key.get_secret_value()
    else:
        Path(url).mkdir(parents=True, exist_ok=True)
    with repo.config.edit("local") as conf:
        conf["remote"][REMOTE_NAME] = remote
        conf["core"]["remote"] = REMOTE_NAME
    local = Path(repo.dvc_dir) / "config.local"
    if local.exists():
        local.chmod(0o600)  # it may hold credentials
    return url


def read_version(dvc_file: Path) -> tuple[str, int]:
    """(directory md5 without ``.dir``, number of files) recorded in a ``.dvc`` file."""
    import yaml

    try:
        doc = yaml.safe_load(dvc_file.read_text())
        out = doc["outs"][0]
        return str(out["md5"]).removesuffix(".dir"), int(out.get("nfiles", 1))
    except (OSError, KeyError, IndexError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise DetopsError(f"cannot read the dataset version from {dvc_file}: {exc}") from None


def _dataset_dir(root: str | Path, settings: Settings) -> Path:
    data = (Path(settings.project_root) / DATA_DIR).resolve()
    given = Path(root).expanduser().resolve()
    if given != data:
        raise DetopsError(
            f"dataset root {given} is not {data}: data.dvc tracks ./{DATA_DIR} of the project; "
            f"copy the dataset there (cp -r {given} {data}) and version that"
        )
    return data


def version_dataset(
    root: str | Path,
    *,
    settings: Settings,
    push: bool = False,
    sample_images: int | None = 500,
    docs_dir: str | Path | None = None,
    validate: bool = True,
) -> DatasetVersion:
    """Validate, ``dvc add`` and optionally push the dataset at ``root`` (must be ``<project>/data``).
    ``validate=False`` skips the validation for a caller that has just validated this dataset (the
    flow's ``validate-data`` step runs right before).

    Raises ``InvalidDatasetError`` (carrying the report) when validation fails, ``DetopsError`` for a
    root elsewhere or a project without DVC.
    """
    from detops.data.validate import validate_dataset

    project = Path(settings.project_root).resolve()
    data = _dataset_dir(root, settings)
    report = validate_dataset(data, sample_images=sample_images, docs_dir=docs_dir) if validate else None
    if report is not None and not report.success:
        raise InvalidDatasetError(
            f"{data} failed validation ({len(report.failures)} expectation(s)); not versioned", report=report
        )
    with _repo(project) as repo:
        # DVC's own "To track the changes with git" hint would repeat the CLI's; keep its warnings.
        logging.getLogger("dvc.repo.scm_context").setLevel(logging.WARNING)
        repo.add([str(data)])
        pushed, remote = 0, None
        if push:
            remote = configure_remote(repo, settings)
            with _dvc_errors(f"dvc push to {remote}"):
                pushed = int(repo.push(targets=[str(project / f"{DATA_DIR}.dvc")], remote=REMOTE_NAME))
    md5, files = read_version(project / f"{DATA_DIR}.dvc")
    log.info(
        "dataset version %s (%d files)%s",
        md5,
        files,
        f", {pushed} file(s) pushed to the DVC remote {remote}" if remote else ", not pushed",
    )
    return DatasetVersion(
        md5=md5, files=files, dvc_file=project / f"{DATA_DIR}.dvc", remote=remote, pushed=pushed
    )


def pull_dataset(*, settings: Settings) -> DatasetVersion:
    """Restore ``<project>/data`` from the configured remote as recorded in ``data.dvc``."""
    project = Path(settings.project_root).resolve()
    dvc_file = project / f"{DATA_DIR}.dvc"
    if not dvc_file.is_file():
        raise DetopsError(
            f"{dvc_file} does not exist: version a dataset first (detops data version data --push)"
        )
    with _repo(project) as repo:
        remote = configure_remote(repo, settings)
        with _dvc_errors(f"dvc pull from {remote}"):
            result = repo.pull(targets=[str(dvc_file)], remote=REMOTE_NAME)
    md5, files = read_version(dvc_file)
    fetched = int(result.get("fetched", 0)) if isinstance(result, dict) else 0
    return DatasetVersion(md5=md5, files=files, dvc_file=dvc_file, remote=remote, pushed=fetched)


def check_version(version: str) -> str:
    """``version`` when it is a DVC directory hash (32 lowercase hex digits); else ``DetopsError``."""
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise DetopsError(f"dataset version {version!r}: expected the 32 hex digits of a DVC directory hash")
    return version


DATASETS_DIR = "datasets"


def dataset_cache(settings: Settings) -> Path:
    """Where pulled versions live: ``<home>/datasets/<version>``."""
    return Path(settings.home) / DATASETS_DIR


def pulled_version(path: str | Path) -> str | None:
    """The version a directory of some machine's dataset cache holds (``.../datasets/<version>``, as
    ``pull_version`` names it), or None for any other directory."""
    p = Path(path)
    return p.name if p.parent.name == DATASETS_DIR and VERSION_RE.match(p.name) else None


def pull_version(version: str, *, settings: Settings, out: str | Path | None = None) -> Path:
    """Materialise dataset ``version`` from the configured DVC remote and return its directory.

    Default directory: ``<home>/datasets/<version>``, returned at once when present (it only appears,
    by an atomic rename, once every file has been fetched and checked). ``out``: that directory instead
    (it must not exist yet; filled through the cache). Raises ``DetopsError`` naming the version and the
    remote for a malformed or unknown version, or an unreachable remote.
    """
    check_version(version)
    dest = None if out is None else Path(out).expanduser().resolve()
    if dest is not None and dest.exists():
        raise DetopsError(f"--out {dest}: already exists; give a new directory for dataset version {version}")
    target = dataset_cache(settings) / version
    if not target.is_dir():
        _fetch_into(version, target, settings=settings)
    if dest is None:
        return target
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(target, partial)
        os.replace(partial, dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest


def dataset_root_for(dataset: dict[str, Any], *, settings: Settings) -> Path:
    """The local directory of a flow's ``dataset`` (``{"version", "remote", "root"}``) on the machine
    that runs the step: the version pulled from its remote (``pull_version``); or, for a version
    that was not pushed (``remote`` None), the directory it was versioned from, which then has to be
    on this machine (``DetopsError`` when it is not)."""
    version = check_version(str(dataset.get("version") or ""))
    if dataset.get("remote"):
        return pull_version(version, settings=settings)
    root = Path(str(dataset.get("root") or ""))
    if not root.is_dir():
        raise DetopsError(
            f"dataset version {version} was not pushed and {root} is not on this machine; "
            "version it with --push so that any worker can pull it"
        )
    return root


def _fetch_into(version: str, target: Path, *, settings: Settings) -> None:
    """Fetch ``version`` through a scratch DVC repository beside the cache and rename its checkout to
    ``target``. The scratch repository holds a one-output ``.dvc`` file naming the version: DVC fetches
    the directory's manifest by its hash, then its files, and checks every file's hash."""
    import yaml

    cache = target.parent
    cache.mkdir(parents=True, exist_ok=True)
    scratch = cache / ".dvc-repo"
    quiet = _quiet_dvc()
    if not (scratch / ".dvc").is_dir():
        os.environ.setdefault("DVC_NO_ANALYTICS", "1")
        from dvc.repo import Repo

        Repo.init(str(scratch), no_scm=True, force=True).close()
    name = f"pull-{version[:8]}-{uuid.uuid4().hex[:8]}"
    dvc_file = scratch / f"{name}.dvc"
    out = {"md5": f"{version}.dir", "hash": "md5", "path": name}  # DVC 3's md5 (not the legacy one)
    dvc_file.write_text(yaml.safe_dump({"outs": [out]}))
    remote = remote_url(settings)
    try:
        with _repo(scratch) as repo:
            try:
                remote = configure_remote(repo, settings)
            except DetopsError as exc:  # an unreachable or refusing S3 endpoint
                raise DetopsError(f"dataset version {version}: DVC remote {remote}: {exc}") from None
            with repo.config.edit("local") as conf:
                conf["cache"]["type"] = "reflink,hardlink,copy"  # the checkout shares the fetched files
            try:
                repo.pull(targets=[str(dvc_file)], remote=REMOTE_NAME)
            except Exception as exc:  # DVC's errors vary by remote and cause; one line for each
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                if type(exc).__name__ == "CheckoutError":  # fetched what there was; files missing
                    first = "the remote does not hold it (an unknown version, or a push that did not finish)"
                raise DetopsError(
                    f"dataset version {version}: cannot pull it from the DVC remote {remote}: {first}"
                ) from None
        checkout = scratch / name
        if not checkout.is_dir():
            raise DetopsError(f"dataset version {version}: the DVC remote {remote} returned no directory")
        try:
            os.replace(checkout, target)
        except OSError:
            if not target.is_dir():  # another process completed it first: theirs is as good
                raise
    finally:
        dvc_file.unlink(missing_ok=True)
        shutil.rmtree(scratch / name, ignore_errors=True)
        quiet.restore()
    log.info("dataset version %s pulled from %s into %s", version, remote, target)


@dataclass
class _QuietDvc:
    """DVC's own info and warning lines (``Initialized DVC repository.``, the list of missing cache
    files) silenced while ``pull_version`` runs: its failure is reported as one error line instead."""

    levels: dict[str, int]

    def restore(self) -> None:
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


def _quiet_dvc() -> _QuietDvc:
    names = ("dvc", "dvc_data", "dvc_objects")
    quiet = _QuietDvc({name: logging.getLogger(name).level for name in names})
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return quiet
