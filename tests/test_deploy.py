"""What can be proved here of the images and the compose stack without Docker: the compose file against the compose
spec and the rules scaling needs, the Dockerfile against hadolint, and each service started exactly as its image
would start it (the image's files only, a virtual environment built from uv.lock, the image's command) serving a
run against a test-started Temporal."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from client.devstack import WORKER_DEFAULTS
from deploy.scripted_model import ScriptedLlm
from tests.harness import ARTICLE, ROOT, Stack, tollgate_cli

BIN = Path(sys.executable).parent
SCALED = ("orchestrator", "analyzer", "validator")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_the_compose_file_is_valid_against_the_compose_spec() -> None:
    done = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                           str(ROOT / "docker-compose.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_references_only_what_it_defines_and_scaled_workers_have_no_fixed_name_or_port() -> None:
    spec = compose()
    services, volumes, networks = spec["services"], set(spec["volumes"]), set(spec["networks"])
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "Dockerfile").read_text(), re.M))
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in volumes, f"{name} uses volume {source}, not defined"
        assert set(service.get("networks", [])) <= networks, name
        for env_file in service.get("env_file", []):
            assert env_file.get("required") is False or (ROOT / env_file["path"]).exists(), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on {dependency}, not defined"
            if condition["condition"] == "service_healthy":
                target = services[dependency]
                assert "healthcheck" in target or "build" in target, f"{dependency} has no health check"
        if "build" in service:
            assert service["build"]["target"] in targets, f"{name} builds target {service['build']['target']}"
    for name in SCALED:
        assert "container_name" not in services[name] and "ports" not in services[name], name
        assert services[name]["stop_grace_period"] == "45s"
        env = services[name]["environment"]
        assert float(env["TOLLGATE_SHUTDOWN_GRACE_SECONDS"]) < 45, "the stop timeout outlasts the graceful shutdown"
        # the trace link opens Jaeger's UI; spans go to its OTLP port; data goes through the bucket
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert env["TOLLGATE_JAEGER_URL"] == "http://localhost:16686"
        assert env["TOLLGATE_ARTIFACT_ROOT"].startswith("s3://")
        assert env["TOLLGATE_PAYLOAD_KEYS"].startswith("${TOLLGATE_PAYLOAD_KEYS:?"), "no key, no start: required"
    assert not any("auto-setup" in str(s.get("image", "")) for s in services.values()), "a deprecated image"
    assert services["model"]["profiles"] == ["local-llm"]
    assert not re.search(r"(sk-[A-Za-z0-9]{10,}|OPENAI_API_KEY=\S)", (ROOT / "docker-compose.yml").read_text())


@dataclass
class Stage:
    name: str
    parent: str
    copies: list[tuple[str, str]] = field(default_factory=list)  # (source in the repository, destination)
    cmd: list[str] = field(default_factory=list)
    user: str | None = None
    healthcheck: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def dockerfile_stages() -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if match := re.match(r"^FROM (\S+) AS (\S+)$", line):
            current = stages[match[2]] = Stage(match[2], match[1])
        elif current is None:
            continue
        elif line.startswith("COPY ") and "--from=" not in line:
            *sources, destination = line.split()[1:]
            current.copies += [(source, destination) for source in sources]
        elif line.startswith("CMD ["):
            current.cmd = json.loads(line[4:])
        elif line.startswith("USER "):
            current.user = line.split()[1]
        elif line.startswith("HEALTHCHECK"):
            current.healthcheck = line
        elif line.startswith("ENV "):
            current.env.update(item.partition("=")[::2] for item in shlex.split(line[4:]))
    return stages


def image_files(stages: dict[str, Stage], target: str) -> list[tuple[str, str]]:
    stage = stages[target]
    inherited = image_files(stages, stage.parent) if stage.parent in stages else []
    return inherited + stage.copies


def test_the_dockerfile_passes_hadolint_and_each_image_holds_only_its_service() -> None:
    done = subprocess.run([str(BIN / "hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    stages = dockerfile_stages()
    for service in SCALED:
        stage = stages[service]
        assert stage.user == "10001:10001", "not root"
        assert stage.cmd == ["python", "-m", f"services.{service}"]
        sources = {source for source, _ in image_files(stages, service) if source not in ("pyproject.toml", "uv.lock")}
        assert sources == {"shared/", "services/__init__.py", f"services/{service}/"}, sources
        assert any(s.healthcheck and "shared.health" in s.healthcheck for s in (stage, stages[stage.parent]))
        env = {**stages[stage.parent].env, **stage.env}
        assert {name: env.get(name) for name in WORKER_DEFAULTS} == WORKER_DEFAULTS, "as tollgate dev runs them"
    assert "deploy/model.py" in " ".join(s for s, _ in stages["local-llm"].copies)
    assert not any("deploy/" in s for service in SCALED for s, _ in image_files(stages, service)), \
        "the model server stays out of the service images"


def test_the_health_check_fails_for_a_missing_or_stale_file_and_passes_for_a_fresh_one(tmp_path: Path) -> None:
    from shared.health import check

    beat = tmp_path / "healthy"
    assert check(None)[0] is False and check(beat)[0] is False
    beat.touch()
    assert check(beat, max_age=30)[0] is True
    os.utime(beat, (beat.stat().st_atime - 60, beat.stat().st_mtime - 60))
    healthy, why = check(beat, max_age=30)
    assert healthy is False and "stuck or stopped" in why


def clean_environment(folder: Path) -> Path:
    """A virtual environment from uv.lock alone, as the image's deps stage builds it (no dev tools, no project)."""
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(folder)}
    uv = shutil.which("uv") or str(BIN / "uv")
    done = subprocess.run([uv, "sync", "--frozen", "--no-dev", "--no-install-project", "--offline"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:  # the cache may lack a wheel on a fresh machine: fetch it
        done = subprocess.run([uv, "sync", "--frozen", "--no-dev", "--no-install-project"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return folder / "bin" / "python"


async def test_each_service_starts_as_its_image_would_and_serves_a_run(
        temporal_address: str, scripted_llm: ScriptedLlm, run_id: str, tmp_path: Path) -> None:
    python = clean_environment(tmp_path / "venv")
    assert not (tmp_path / "venv" / "bin" / "pytest").exists(), "the image's environment has no dev tools"
    stages = dockerfile_stages()
    from tests.harness import make_stack

    stack = make_stack(temporal_address, scripted_llm, tmp_path, start=False)
    try:
        for service in SCALED:
            app = tmp_path / "images" / service
            for source, destination in image_files(stages, service):
                if source in ("pyproject.toml", "uv.lock"):
                    continue
                target = app / destination.rstrip("/") if destination != "./" else app / source
                target.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copyfile(ROOT / source, target)
            env = {**stack.env, "PYTHONPATH": "", "TOLLGATE_HEALTH_FILE": str(app / "healthy")}
            stack.start_command(service, [str(python), *stages[service].cmd[1:]], cwd=app, env=env)
        done = await tollgate_cli(stack.env, "run", str(ARTICLE / "crm_contacts.csv"),
                                  str(ARTICLE / "crm_opportunities.csv"), "--wait", "--run-id", run_id)
        assert done.returncode == 0, done.stdout + done.stderr + stack.log_text()[-3000:]
        assert "insights:" in done.stdout
        for service in SCALED:  # the images' health check, run in each service's own folder
            app = tmp_path / "images" / service
            check = await asyncio.to_thread(
                subprocess.run, [str(python), "-m", "shared.health"], cwd=app,
                env={**stack.env, "PYTHONPATH": "", "TOLLGATE_HEALTH_FILE": str(app / "healthy")},
                capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
    finally:
        stack.stop()
    assert isinstance(stack, Stack)


# --- Kubernetes ----------------------------------------------------------------------------------------------------

K8S = ROOT / "deploy" / "k8s"
KEDA_SCHEMA = json.loads((ROOT / "tests" / "schemas" / "keda-scaledobject.json").read_text())


def test_the_kustomize_subset_renderer_merges_patches_and_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    from tests.kustomize import KustomizeError, render

    (tmp_path / "d.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n"
                                     "  template:\n    spec:\n      containers:\n"
                                     "        - {name: c, image: 'x/a:1', args: [p]}\n        - {name: d, image: y}\n")
    (tmp_path / "p.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n"
                                     "  template:\n    spec:\n      containers:\n        - {name: c, args: [q]}\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [d.yaml]\nnamespace: n\npatches: [{path: p.yaml}]\n"
                                                 "images: [{name: x/a, newTag: '2'}]\n")
    [deployment] = render(tmp_path)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "c", "image": "x/a:2", "args": ["q"]}, {"name": "d", "image": "y"}]
    assert deployment["metadata"]["namespace"] == "n"
    (tmp_path / "kustomization.yaml").write_text("resources: [d.yaml]\ncommonAnnotations: {a: b}\n")
    try:
        render(tmp_path)
        raise AssertionError("an unimplemented field was accepted")
    except KustomizeError as error:
        assert "commonAnnotations" in str(error)


def test_the_kubernetes_manifests_render_and_validate_against_the_kubernetes_and_keda_schemas() -> None:
    import jsonschema
    import kubernetes_validate

    from tests.kustomize import render

    for overlay in (K8S / "base", K8S / "overlays" / "local"):
        rendered = render(overlay)
        kinds = sorted(r["kind"] for r in rendered)
        assert kinds.count("Deployment") == 3 and kinds.count("PodDisruptionBudget") == 3
        assert kinds.count("ScaledObject") == 2
        for resource in rendered:
            if resource["apiVersion"].startswith("keda.sh/"):
                jsonschema.validate(resource, KEDA_SCHEMA)
            else:
                kubernetes_validate.validate(resource, "1.33", strict=True)

    local = {(r["kind"], r["metadata"]["name"]): r for r in render(K8S / "overlays" / "local")}
    config = local[("ConfigMap", "tollgate-config")]["data"]
    assert config["TOLLGATE_S3_ENDPOINT_URL"].startswith("http://minio.")  # the patch merged into the base's map
    assert config["TOLLGATE_ANALYZER_QUEUE"] == "tollgate-analyzer"
    for service in SCALED:
        deployment = local[("Deployment", f"tollgate-{service}")]
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["image"] == f"tollgate/{service}:dev" and deployment["metadata"]["namespace"] == "tollgate"
        assert pod["terminationGracePeriodSeconds"] > float(config["TOLLGATE_SHUTDOWN_GRACE_SECONDS"])
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {"configMapRef": {"name": "tollgate-config"}} in container["envFrom"]
        assert {"secretRef": {"name": "tollgate-secrets"}} in container["envFrom"]
        assert ("Secret", "tollgate-secrets") in local
        assert container["livenessProbe"]["exec"]["command"][:3] == ["python", "-m", "shared.health"]
        assert container["resources"]["limits"] and container["resources"]["requests"]
        assert ("PodDisruptionBudget", f"tollgate-{service}") in local
    for service in ("analyzer", "validator"):  # each worker kind scales on its own queue
        scaled = local[("ScaledObject", f"tollgate-{service}")]
        assert scaled["spec"]["scaleTargetRef"]["name"] == f"tollgate-{service}"
        [trigger] = scaled["spec"]["triggers"]
        assert trigger["type"] == "temporal"
        assert trigger["metadata"]["taskQueue"] == config[f"TOLLGATE_{service.upper()}_QUEUE"]
        assert trigger["metadata"]["endpoint"] == config["TOLLGATE_TEMPORAL_ADDRESS"]
        assert scaled["spec"]["minReplicaCount"] == 1  # the local overlay keeps one; the base scales to zero
    base = {(r["kind"], r["metadata"]["name"]): r for r in render(K8S / "base")}
    assert base[("ScaledObject", "tollgate-analyzer")]["spec"]["minReplicaCount"] == 0


def test_the_keda_schema_rejects_what_keda_would() -> None:
    import jsonschema

    good: dict[str, Any] = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "w"},
                            "spec": {"scaleTargetRef": {"name": "w"}, "triggers": [{"type": "temporal", "metadata": {
                                "endpoint": "t:7233", "taskQueue": "q", "targetQueueSize": "4"}}]}}
    jsonschema.validate(good, KEDA_SCHEMA)
    for broken in ({"targetQueueSize": 4}, {"taskQueue": None}, {"queueType": "activity"}):
        bad = copy.deepcopy(good)
        metadata = bad["spec"]["triggers"][0]["metadata"]
        metadata.update({k: v for k, v in broken.items() if v is not None})
        for k in [k for k, v in broken.items() if v is None]:
            del metadata[k]
        try:
            jsonschema.validate(bad, KEDA_SCHEMA)
            raise AssertionError(f"accepted {broken}")
        except jsonschema.ValidationError:
            pass
