"""infra/ is checked offline: compose against the compose spec, Kubernetes manifests against the
Kubernetes API schemas, Dockerfiles against pyproject.toml and the Makefile, .env.example against the
settings object. No Docker engine or cluster is needed (none runs on CI)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _env_example() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (INFRA / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: line {line!r} is not KEY=VALUE"
            out[key] = value
    return out


def test_compose_matches_the_compose_spec() -> None:
    import check_jsonschema
    import jsonschema

    schema_path = Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_path.read_text())
    jsonschema.Draft202012Validator(schema).validate(_compose())


def test_compose_spec_check_rejects_a_broken_file() -> None:
    """The schema check above can fail: an unknown service key is refused."""
    import check_jsonschema
    import jsonschema

    schema_path = Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/compose-spec.json"
    broken = _compose()
    broken["services"]["mlflow"]["commandd"] = ["typo"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(json.loads(schema_path.read_text())).validate(broken)


def test_compose_runs_the_platform() -> None:
    services = _compose()["services"]
    assert {"postgres", "minio", "mlflow", "prefect-server", "cpu-worker", "gpu-worker"} <= set(services)

    mlflow = services["mlflow"]
    env = mlflow["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    serve = (ROOT / mlflow["entrypoint"][0].removeprefix("/opt/detops/")).read_text()
    assert re.search(r"--app-name basic-auth\b", serve), "the MLflow server must run with authentication on"

    prefect_db = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert prefect_db.startswith("postgresql+asyncpg://")

    pools = {
        name: s["command"][s["command"].index("--pool") + 1]
        for name, s in services.items()
        if "worker" in name
    }
    assert pools == {"cpu-worker": "cpu", "gpu-worker": "t4"}
    devices = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["gpu-worker"]["build"]["dockerfile"] == "infra/docker/gpu.Dockerfile"
    assert services["cpu-worker"]["build"]["dockerfile"] == "infra/docker/cpu.Dockerfile"


def test_compose_variables_are_all_in_env_example() -> None:
    text = (INFRA / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    missing = used - set(_env_example())
    assert not missing, f"compose.yaml uses variables that infra/.env.example lacks: {sorted(missing)}"


def test_env_example_has_every_setting_and_no_secret() -> None:
    from pydantic import SecretStr

    from detops.settings import Settings

    env = _env_example()
    for name, field in Settings.model_fields.items():
        key = f"DETOPS_{name.upper()}"
        assert key in env, f"infra/.env.example lacks {key}"
        if field.annotation is not None and SecretStr in getattr(
            field.annotation, "__args__", (field.annotation,)
        ):
            assert env[key] == "", f"infra/.env.example: secret {key} must be empty"
    for key, value in env.items():
        if re.search(r"PASSWORD|SECRET|ACCESS_KEY|USERNAME|ROOT_USER", key):
            assert value == "", f"infra/.env.example: {key} must be empty, got a value"


def _k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    import kubernetes_validate

    docs = _k8s_documents()
    assert {d["kind"] for _, d in docs} >= {"Namespace", "ConfigMap", "Deployment", "ServiceAccount", "Role"}
    for path, doc in docs:
        try:
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")


def test_kubernetes_schema_check_rejects_a_typo() -> None:
    import kubernetes_validate

    _, deployment = next((p, d) for p, d in _k8s_documents() if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containerz"] = deployment["spec"]["template"]["spec"].pop(
        "containers"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30.0", strict=True)


def test_kubernetes_workers_serve_both_pools() -> None:
    pools = {}
    for _, doc in _k8s_documents():
        if doc["kind"] == "Deployment":
            args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
            pools[args[args.index("--pool") + 1]] = args[args.index("--type") + 1]
    assert pools == {"cpu": "process", "t4": "kubernetes"}


def _dockerfile(name: str) -> str:
    return (INFRA / "docker" / name).read_text()


@pytest.mark.parametrize("name", ["cpu.Dockerfile", "gpu.Dockerfile"])
def test_images_install_the_pinned_stack(name: str) -> None:
    text = _dockerfile(name)
    makefile_torch = re.search(r"^TORCH_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_torch is not None
    assert re.search(r"^ARG TORCH_VERSION=(\S+)$", text, re.M).group(1) == makefile_torch.group(1)  # type: ignore[union-attr]
    assert "torch==${TORCH_VERSION}" in text

    project = _pyproject()["project"]
    pins = {}
    for req in project["dependencies"] + [r for rs in project["optional-dependencies"].values() for r in rs]:
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+?)(?:\[.*\])?==(\S+)$", req)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    # Any package an image pins itself must carry pyproject's pin; the rest comes from pyproject.
    for pkg, version in re.findall(r"\b([A-Za-z][A-Za-z0-9_.\-]*)==([0-9][^\s\"']*)", text):
        if pkg.lower() == "torch":
            continue
        assert pins.get(pkg.lower()) == version, f"{name}: {pkg}=={version} differs from pyproject.toml"
    extras = re.search(r'uv pip install --system "\.\[([a-z,]+)\]"', text)
    assert extras is not None, f"{name}: the project must be installed from pyproject.toml"
    for extra in extras.group(1).split(","):
        assert extra in project["optional-dependencies"], f"{name}: extra {extra!r} not in pyproject.toml"


def test_image_bases_and_sources() -> None:
    cpu, gpu = _dockerfile("cpu.Dockerfile"), _dockerfile("gpu.Dockerfile")
    requires = _pyproject()["project"]["requires-python"]
    assert re.search(r"^FROM python:(\d+\.\d+)", cpu, re.M).group(1) in requires  # type: ignore[union-attr]
    assert "tensorrt" in re.search(r"^ARG TRT_BASE=(\S+)$", gpu, re.M).group(1)  # type: ignore[union-attr]
    assert '".[trt,server]"' in gpu
    for text in (cpu, gpu):
        for src in re.findall(r"^COPY (\S+) ", text, re.M):
            assert (ROOT / src).exists(), f"COPY source {src} is not in the repository"


def test_mlflow_entrypoint_is_valid_shell() -> None:
    subprocess.run(["sh", "-n", str(INFRA / "mlflow" / "serve.sh")], check=True)


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="no `docker compose` client on this machine",
)
def test_docker_compose_config(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    values = {k: (v or "placeholder") for k, v in _env_example().items()}
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    subprocess.run(
        ["docker", "compose", "-f", str(INFRA / "compose.yaml"), "--env-file", str(env), "config", "-q"],
        check=True,
    )


# Work-pool base job templates (infra/prefect/*.json): each "{{ var }}" placeholder is filled from the
# template's own variable defaults, as a worker does for a flow run that overrides nothing.
_PLACEHOLDER = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")


def _fill(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    if isinstance(node, str) and (m := _PLACEHOLDER.match(node)):
        return values[m.group(1)]
    if isinstance(node, str):  # a placeholder inside text ("{{ name }}-") is filled as text
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(values[m.group(1)]), node)
    return node


def _pool_template(name: str) -> dict[str, Any]:
    return json.loads((INFRA / "prefect" / name).read_text())


def _t4_job(template: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    props = template["variables"]["properties"]
    values = {k: v.get("default") for k, v in props.items()} | overrides
    # what the Kubernetes worker hands the manifest: a name, env as a list, the command as args
    values |= {"name": "retrain-run", "labels": {"prefect.io/flow-run-id": "x"}, "env": [], "command": []}
    return _fill(template["job_configuration"]["job_manifest"], values)


def test_t4_kubernetes_template_is_a_valid_gpu_job() -> None:
    import kubernetes_validate

    template = _pool_template("t4-kubernetes.json")
    job = _t4_job(template)
    try:
        kubernetes_validate.validate(job, "1.30.0", strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"t4-kubernetes.json job_manifest: {exc.message}")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "detops-gpu:latest"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "t4" in " ".join(pod["nodeSelector"].values()).lower()
    # the settings the worker Deployments read (infra/k8s/config.yaml) reach the flow runs too
    refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    config_maps = {d["metadata"]["name"] for _, d in _k8s_documents() if d["kind"] == "ConfigMap"}
    assert refs & config_maps and "detops-secrets" in refs


@pytest.mark.parametrize("gpus", [1, 4])
def test_gpu_kubernetes_template_is_a_valid_training_job(gpus: int) -> None:
    import kubernetes_validate

    job = _t4_job(_pool_template("gpu-kubernetes.json"), gpus=gpus)
    try:
        kubernetes_validate.validate(job, "1.30.0", strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"gpu-kubernetes.json job_manifest: {exc.message}")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert (
        pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        and container["image"] == "detops-gpu:latest"
    )


def test_t4_template_check_rejects_a_bad_job() -> None:
    import kubernetes_validate

    template = _pool_template("t4-kubernetes.json")
    spec = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    spec["nodeSelektor"] = spec.pop("nodeSelector")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(_t4_job(template), "1.30.0", strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):  # a GPU count that is not a quantity
        kubernetes_validate.validate(
            _t4_job(_pool_template("t4-kubernetes.json"), gpus=[1]), "1.30.0", strict=True
        )


@pytest.mark.parametrize(
    "name",
    [
        "cpu-process.json",
        "gpu-process.json",
        "gpu-kubernetes.json",
        "gpu-docker.json",
        "t4-kubernetes.json",
        "t4-docker.json",
    ],
)
def test_pool_templates_fill_every_placeholder_from_their_variables(name: str) -> None:
    import jsonschema

    template = _pool_template(name)
    variables = template["variables"]
    jsonschema.Draft202012Validator.check_schema(variables)
    props = variables["properties"]
    for key, prop in props.items():
        assert "description" in prop, f"{name}: variable {key} has no description"
    defaults = {k: v.get("default") for k, v in props.items()}
    _fill(template["job_configuration"], defaults)  # KeyError names a placeholder with no variable


def test_t4_docker_template_requests_one_gpu() -> None:
    template = _pool_template("t4-docker.json")
    props = template["variables"]["properties"]
    assert props["image"]["default"] == "detops-gpu:latest"
    job = _fill(template["job_configuration"], {k: v.get("default") for k, v in props.items()})
    (request,) = job["container_create_kwargs"]["device_requests"]
    assert request["Count"] == 1 and request["Capabilities"] == [["gpu"]]
