"""The Kubernetes manifests (deploy/k8s) rendered offline with `kubectl kustomize`, and checked against
the code they run rather than against themselves: every HPOSTEER_* variable of the service is a field
of hposteer.service.config.Settings (and its value parses), the pilot's command line parses with the real
`hposteer` parser, probe paths are routes of the real app, Secret and claim references resolve (or
name the documented Secrets the operator creates), the trial database URL points at the trial
PostgreSQL, and every container runs hardened.

There is no cluster here, so nothing is applied; test_compose.py runs the same images for real.
Without kubectl it skips; under CI=true it fails.
"""

from __future__ import annotations

import base64
import inspect
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import make_url

import hposteer.client.settings
from hposteer.client.cli import build_parser as client_parser
from hposteer.service.app import create_app
from hposteer.service.cli import build_parser as service_parser
from hposteer.service.config import Settings
from tests.conftest import IN_CI, docker_with_image

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = {"base": BASE, "trial": K8S / "overlays" / "trial", "production": K8S / "overlays" / "production"}
# Secrets the operator creates with kubectl (named in base/kustomization.yaml and docs/operator.md).
EXTERNAL_SECRETS = {
    "base": {"hposteer-database", "hposteer-pilot-token"},
    "trial": {"hposteer-pilot-token"},
    "production": {"hposteer-database", "hposteer-pilot-token"},
}
IMAGES = {
    "base": {"service": "hposteer/service:latest", "pilot": "hposteer/pilot:latest"},
    "trial": {"service": "hposteer/service:latest", "pilot": "hposteer/pilot:latest"},
    "production": {
        "service": "registry.example.org/hposteer/service:0.1.0",
        "pilot": "registry.example.org/hposteer/pilot:0.1.0",
    },
}
PILOT_ENV = {"HPOSTEER_SERVER", "HPOSTEER_TOKEN", "HPOSTEER_TOKEN_FILE"}

Obj = dict[str, Any]

_rendered: dict[str, list[Obj]] = {}


def render(overlay: str) -> list[Obj]:
    """`kubectl kustomize` of one directory, parsed (cached: each renders once per session)."""
    if overlay not in _rendered:
        if shutil.which("kubectl") is None:
            if IN_CI:
                pytest.fail("CI=true but kubectl is missing: the Kubernetes manifests must be rendered in CI")
            pytest.skip("no kubectl here (the manifests render with `kubectl kustomize`)")
        out = subprocess.run(
            ["kubectl", "kustomize", str(OVERLAYS[overlay])], capture_output=True, text=True, check=False, timeout=60
        )
        assert out.returncode == 0, out.stderr
        _rendered[overlay] = [o for o in yaml.safe_load_all(out.stdout) if o]
    return _rendered[overlay]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    """The object of that kind and name (generated Secrets carry a hash suffix)."""
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and (o["metadata"]["name"] == name or (kind == "Secret" and o["metadata"]["name"].startswith(name + "-")))
    ]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def container(workload: Obj, index: int = 0) -> Obj:
    return dict(workload["spec"]["template"]["spec"]["containers"][index])


def env_of(c: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in c.get("env", [])}


def secret_data(secret: Obj, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_kustomization_renders_the_service_its_service_and_a_pilot(overlay: str) -> None:
    objects = render(overlay)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] != "Secret"}
    assert {
        ("Deployment", "hposteer-service"),
        ("Service", "hposteer"),
        ("Deployment", "hposteer-pilot"),
    } <= names
    assert one(objects, "Deployment", "hposteer-service")["spec"]["replicas"] == 2
    if overlay == "trial":
        assert {("StatefulSet", "postgres"), ("Service", "postgres"), ("Namespace", "hposteer-trial")} <= names
        assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"hposteer-trial"}
    else:
        assert ("StatefulSet", "postgres") not in names, "PostgreSQL is only for trying it out"
    if overlay == "production":
        assert {o["metadata"].get("namespace") for o in objects} == {"hposteer"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_deploy_images(overlay: str) -> None:
    objects = render(overlay)
    assert container(one(objects, "Deployment", "hposteer-service"))["image"] == IMAGES[overlay]["service"]
    assert container(one(objects, "Deployment", "hposteer-pilot"))["image"] == IMAGES[overlay]["pilot"]
    if overlay == "trial":
        assert container(one(objects, "StatefulSet", "postgres"))["image"] == "hposteer/postgres:latest"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_variables_are_settings_the_service_reads(overlay: str, tmp_path: Path) -> None:
    service = container(one(render(overlay), "Deployment", "hposteer-service"))
    env = env_of(service)
    fields = set(Settings.model_fields)
    unknown = [name for name in env if not (name.startswith("HPOSTEER_") and name[9:].lower() in fields)]
    assert unknown == [], f"the service reads no such settings: {unknown}"
    assert "HPOSTEER_DATABASE_URL" in env and "secretKeyRef" in env["HPOSTEER_DATABASE_URL"]["valueFrom"]
    literal = {name[9:].lower(): e["value"] for name, e in env.items() if "value" in e}
    settings = Settings.model_validate(literal)  # every literal value parses as its setting
    assert settings.host == "0.0.0.0" and settings.port == service["ports"][0]["containerPort"]
    # The replicas share only the database: uploads live in it, the data directory is a cache.
    assert settings.blob_store == "database"
    spec = one(render(overlay), "Deployment", "hposteer-service")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in service["volumeMounts"]}
    assert "emptyDir" in volumes[mounts[str(settings.data_dir)]], "the data directory is a writable cache"
    args = service_parser().parse_args(service["args"][1:])
    assert service["args"][0] == "hposteer" and args.command == "serve"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pilot_command_and_environment_are_what_the_pilot_reads(overlay: str) -> None:
    objects = render(overlay)
    pilot_deployment = one(objects, "Deployment", "hposteer-pilot")
    pilot = container(pilot_deployment)
    assert pilot["args"][0] == "hposteer"
    args = client_parser().parse_args(pilot["args"][1:])
    assert args.command == "pilot" and args.runtime == "local" and args.exit_when_idle is None
    mounts = {m["mountPath"]: m for m in pilot["volumeMounts"]}
    assert args.workdir in mounts, "the working directories are on a volume (read-only root)"
    env = env_of(pilot)
    assert set(env) <= PILOT_ENV
    source = inspect.getsource(hposteer.client.settings)
    assert all(f'"{name}"' in source for name in env), "the client reads these variables"
    # The server URL names the Service and its port.
    service = one(objects, "Service", "hposteer")
    assert env["HPOSTEER_SERVER"]["value"] == f"http://hposteer:{service['spec']['ports'][0]['port']}"
    # The token file lies in the mounted Secret, under the key the Secret must hold.
    token_file = Path(env["HPOSTEER_TOKEN_FILE"]["value"])
    mount = mounts[str(token_file.parent)]
    volumes = {v["name"]: v for v in pilot_deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]]["secret"]["secretName"] == "hposteer-pilot-token" and mount["readOnly"]
    assert token_file.name == "token"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_routes_of_the_service(overlay: str, tmp_path: Path) -> None:
    app = create_app(Settings.model_validate({"data_dir": tmp_path}))
    routes = {getattr(r, "path", None) for r in app.routes}
    service = container(one(render(overlay), "Deployment", "hposteer-service"))
    ports = {p["name"] for p in service["ports"]}
    probes = {kind: service[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    for kind, probe in probes.items():
        assert probe["path"] in routes, f"{kind}: no route {probe['path']}"
        assert probe["port"] in ports
    assert probes["readinessProbe"]["path"] == "/healthz", "ready only while the database answers"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secret_and_claim_references_resolve(overlay: str) -> None:
    objects = render(overlay)
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    external: set[str] = set()
    for workload in workloads(objects):
        spec = workload["spec"]["template"]["spec"]
        templates = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        refs: list[tuple[str, str | None]] = []
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.append((ref["name"], ref["key"]))
            mounted = {m["name"] for m in c.get("volumeMounts", [])}
            declared = {v["name"] for v in spec.get("volumes", [])} | templates
            assert mounted <= declared, f"{workload['metadata']['name']}: mounts of undeclared volumes"
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                keys = [item["key"] for item in volume["secret"].get("items", [])] or [None]
                refs += [(volume["secret"]["secretName"], key) for key in keys]
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for name, key in refs:
            if name in secrets:
                assert key is None or key in secrets[name]["data"], f"secret {name} has no key {key}"
            else:
                external.add(name)
    assert external == EXTERNAL_SECRETS[overlay]
    documented = (BASE / "kustomization.yaml").read_text()
    assert all(name in documented for name in external)


def test_trial_database_url_points_at_the_trial_postgres() -> None:
    objects = render("trial")
    url = make_url(secret_data(one(objects, "Secret", "hposteer-database"), "url"))
    postgres = container(one(objects, "StatefulSet", "postgres"))
    env = {name: e.get("value") for name, e in env_of(postgres).items()}
    service = one(objects, "Service", "postgres")
    assert url.drivername == "postgresql+psycopg"
    assert url.host == service["metadata"]["name"] and url.port == service["spec"]["ports"][0]["port"]
    assert url.database == env["POSTGRES_DB"] and url.username == env["POSTGRES_USER"]
    assert url.password == secret_data(one(objects, "Secret", "hposteer-postgres"), "password")
    assert str(env["POSTGRES_PASSWORD_FILE"]).startswith("/run/secrets/postgres/")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_their_pods(overlay: str) -> None:
    objects = render(overlay)
    pairs = [("hposteer", "Deployment", "hposteer-service")]
    if overlay == "trial":
        pairs.append(("postgres", "StatefulSet", "postgres"))
    for service_name, kind, workload_name in pairs:
        service = one(objects, "Service", service_name)
        selector = service["spec"]["selector"].items()
        selected = [w for w in workloads(objects) if selector <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert [(w["kind"], w["metadata"]["name"]) for w in selected] == [(kind, workload_name)]
        ports = {p["name"] for p in container(selected[0])["ports"]}
        assert all(p["targetPort"] in ports for p in service["spec"]["ports"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_hardened(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        name = workload["metadata"]["name"]
        spec = workload["spec"]["template"]["spec"]
        # Service links would put HPOSTEER_PORT=tcp://... (from the Service `hposteer`) into the environment.
        assert spec["enableServiceLinks"] is False, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0, name
        for c in spec["containers"]:
            context = c["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"], name
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, f"{name}: a writable /tmp"


def test_pod_users_are_the_users_of_the_images() -> None:
    """The uids in the manifests are the images' own users (the postgres image's comes from Debian)."""
    engine = docker_with_image("hposteer/postgres:latest")
    try:
        for workload in workloads(render("trial")):
            context = workload["spec"]["template"]["spec"]["securityContext"]
            image = container(workload)["image"]
            docker_with_image(image).close()
            user = engine.images.get(image).attrs["Config"]["User"]
            ids = engine.containers.run(image, ["sh", "-c", "id -u; id -g"], user=user, remove=True).decode().split()
            assert [int(i) for i in ids] == [context["runAsUser"], context["runAsGroup"]], image
            assert context["fsGroup"] == context["runAsGroup"], image
    finally:
        engine.close()
