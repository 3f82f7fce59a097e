"""deploy/k8s held to the code, offline: the base and every overlay rendered by a real kustomize,
every object valid against Kubernetes' schemas (kubernetes-validate bundles them) or, for the
operators' kinds, against tests/data/crds; and what a user of the cluster would notice: pods that
run as the image's non-root user on a read-only root, probes on the routes the runtime serves, a
preStop sleep for endpoints to drop a pod and a grace period longer than it and the drain, only
real settings, an Ingress that sends every route to the service that serves it (as `voxbus
stack`'s HAProxy does), an autoscaler on a metric ingest exports, a disruption budget per
replicated service, ServiceMonitors that find every service (one job per service), the rules
themselves, and in-cluster Kafka and Redis at the addresses the ConfigMap names.

An overlay that asks for credentials (production: a gitignored secrets.env, written from its
secrets.env.example) is rendered from a temporary copy of deploy/k8s given made-up values, never
from an operator's secrets.env in the checkout.

kustomize comes from `$VOXBUS_CACHE_DIR/bin` (`scripts/bootstrap.sh test` builds it there when
neither kustomize nor kubectl is installed), else PATH; without one these tests fail, saying so.
The PrometheusRule is written by voxbus.devinfra.prometheus_rule from deploy/prometheus/rules.yml:
after changing the rules, `uv run --frozen python -m voxbus.devinfra generate`.
"""

import atexit
import base64
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY

from voxbus.cli.main import build_parser
from voxbus.common.constants import SERVICE_NAMES
from voxbus.common.runtime import create_app
from voxbus.common.settings import Settings
from voxbus.devinfra import prometheus_rule
from voxbus.devinfra.paths import cache_dir
from voxbus.devinfra.stack import TELEPHONY_PATHS
from voxbus.ingest import metrics as ingest_metrics
from voxbus.ingest.service import SERVICE as INGEST
from voxbus.telephony.service import SERVICE as TELEPHONY

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
RULES = ROOT / prometheus_rule.SOURCE  # deploy/prometheus/rules.yml
PROMETHEUS_RULE = ROOT / prometheus_rule.TARGET  # in components/prometheus-operator
DOCS = ROOT / "docs" / "deploy-kubernetes.md"
CRDS = ROOT / "tests" / "data" / "crds"
KUSTOMIZE_VERSION = "v5.8.2"  # the one scripts/bootstrap.sh builds
# the oldest Kubernetes these manifests are for, and the newest kubernetes-validate knows
KUBERNETES_VERSIONS = ("1.31", "1.37")
# how long a terminating pod keeps taking connections, for endpoints and the Ingress to drop it
PRE_STOP_SECONDS = 5
SHUTDOWN_MARGIN_SECONDS = 10  # after the drain: consumers stopped, producer flushed, leases released
ADMIN_PATHS = ("/health", "/ready", "/metrics")  # each process's own: not for the Ingress
OVERLAYS = sorted(path.parent.name for path in (K8S / "overlays").glob("*/kustomization.yaml"))
TARGETS = ["base", *(f"overlays/{name}" for name in OVERLAYS)]
COMPONENTS = sorted(path.parent.name for path in (K8S / "components").glob("*/kustomization.yaml"))

Doc = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# rendering and lookups


def kustomize() -> list[str]:
    built = cache_dir() / "bin" / "kustomize"
    if built.is_file() and os.access(built, os.X_OK):
        return [str(built), "build"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    pytest.fail(
        f"no kustomize to render deploy/k8s with: run `scripts/bootstrap.sh test`, which builds kustomize "
        f"{KUSTOMIZE_VERSION} into {built.parent} (with Go 1.26+: `GOBIN={built.parent} go install "
        f"sigs.k8s.io/kustomize/kustomize/v5@{KUSTOMIZE_VERSION}`), or put kustomize or kubectl on PATH"
    )


def env_keys(path: Path) -> list[str]:
    """The keys of an env file (`KEY=value` lines; `#` comments)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line.partition("=")[0] for line in lines if line and not line.startswith("#")]


def made_up_value(key: str) -> str:
    return f"test-{key.lower().replace('_', '-')}"


def copy_of_k8s(with_secrets: bool) -> Path:
    """deploy/k8s in a temporary folder, without the secrets.env an overlay asks for (one of the
    checkout's is an operator's, and gitignored) or, `with_secrets`, with one made from its
    secrets.env.example: every key given a made-up, non-empty value."""
    folder = Path(tempfile.mkdtemp(prefix="voxbus-k8s-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = folder / "k8s"

    def local_secrets(directory: str, names: list[str]) -> list[str]:
        return ["secrets.env"] if "secrets.env.example" in names else []

    shutil.copytree(K8S, copy, ignore=local_secrets)
    if with_secrets:
        for example in copy.glob("overlays/*/secrets.env.example"):
            values = "".join(f"{key}={made_up_value(key)}\n" for key in env_keys(example))
            (example.parent / "secrets.env").write_text(values)
    return copy


@functools.cache
def k8s_with_secrets() -> Path:
    return copy_of_k8s(with_secrets=True)


def kustomize_build(directory: Path) -> subprocess.CompletedProcess[str]:
    command = [*kustomize(), str(directory)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@functools.cache
def rendered(target: str) -> tuple[Doc, ...]:
    """`target` as kustomize renders it, from a copy of deploy/k8s with made-up credentials where
    an overlay asks for them."""
    result = kustomize_build(k8s_with_secrets() / target)
    assert result.returncode == 0, f"`{' '.join(result.args)}` failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(docs: Iterable[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: Iterable[Doc], kind: str, name: str) -> Doc:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def config(docs: Iterable[Doc]) -> dict[str, str]:
    """The environment every voxbus container gets: the ConfigMap, then the Secret over it."""
    (configmap,) = of_kind(docs, "ConfigMap")
    (secret,) = of_kind(docs, "Secret")
    decoded = {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}
    return {**configmap["data"], **decoded}


def settings_of(docs: Iterable[Doc]) -> Settings:
    values = {key.lower(): value for key, value in config(docs).items()}
    return Settings(_env_file=None, **values)


def is_voxbus(container: Doc) -> bool:
    repository = container["image"].rsplit("/", 1)[-1].split(":")[0]
    return repository == "voxbus"


def pods(docs: Iterable[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(Deployment, its pod template's spec) for every Deployment."""
    for deployment in of_kind(docs, "Deployment"):
        yield deployment, deployment["spec"]["template"]["spec"]


def voxbus_containers(docs: Iterable[Doc]) -> Iterator[tuple[Doc, Doc, Doc]]:
    """(Deployment, pod spec, container) for every container that runs the voxbus image."""
    for deployment, spec in pods(docs):
        for container in spec["containers"]:
            if is_voxbus(container):
                yield deployment, spec, container


def served_service(container: Doc) -> str:
    args = build_parser().parse_args(container["args"])
    assert args.command == "serve", f"{container['name']}: {container['args']} runs no single service"
    return str(args.service)


def label_selector_matches(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (`matchLabels`, `matchExpressions`) matches `labels`."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if not {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def object_labels(doc: Doc) -> dict[str, str]:
    labels: dict[str, str] = doc["metadata"].get("labels", {})
    return labels


def pod_labels(deployment: Doc) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def selected(
    selector: Doc, docs: Iterable[Doc], labels: Callable[[Doc], dict[str, str]] = object_labels
) -> list[Doc]:
    """The objects among `docs` whose `labels` a LabelSelector matches (a Service's selector, a
    plain map, is `{"matchLabels": ...}`); `pod_labels` for Deployments' pods."""
    return [doc for doc in docs if label_selector_matches(selector, labels(doc))]


# ---------------------------------------------------------------------------------------------
# schemas


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators = {}
    for path in sorted(CRDS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        jsonschema.Draft202012Validator.check_schema(data["schema"])
        validators[(data["apiVersion"], data["kind"])] = jsonschema.Draft202012Validator(data["schema"])
    return validators


@functools.cache
def schema_errors(text: str) -> tuple[str, ...]:
    """What is wrong with one object (given as JSON, so each is checked once), by every schema."""
    doc = json.loads(text)
    crd = crd_validators().get((doc["apiVersion"], doc["kind"]))
    if crd is not None:
        return tuple(
            f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in crd.iter_errors(doc)
        )
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            return (
                f"no schema for {doc['apiVersion']} {doc['kind']}: Kubernetes has none, so add one to "
                f"{CRDS.relative_to(ROOT)}",
            )
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(map(str, exc.absolute_path))
            errors.append(f"Kubernetes {version}: {where}: {exc.message}")
    return tuple(errors)


# ---------------------------------------------------------------------------------------------
# the layout: overlays are the base plus components


def test_every_overlay_is_the_base_with_components_and_every_component_is_used() -> None:
    assert {"dev", "production"} <= set(OVERLAYS)
    assert {"managed", "in-cluster", "prometheus-operator"} <= set(COMPONENTS)
    used: set[str] = set()
    for name in OVERLAYS:
        kustomization = yaml.safe_load((K8S / "overlays" / name / "kustomization.yaml").read_text())
        assert "../../base" in kustomization["resources"], f"overlays/{name} does not build on the base"
        for component in kustomization.get("components", []):
            assert component.startswith("../../components/"), component
            used.add(component.removeprefix("../../components/"))
    for name in COMPONENTS:
        kustomization = yaml.safe_load((K8S / "components" / name / "kustomization.yaml").read_text())
        assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1", name
        assert kustomization["kind"] == "Component", name
    assert used == set(COMPONENTS), f"components no overlay uses: {set(COMPONENTS) - used}"
    # `managed` and `in-cluster` each say where Kafka and Redis are: never both at once
    assert not any(
        {"../../components/managed", "../../components/in-cluster"}
        <= set(
            yaml.safe_load((K8S / "overlays" / name / "kustomization.yaml").read_text()).get("components", [])
        )
        for name in OVERLAYS
    )


@pytest.mark.parametrize("target", TARGETS)
def test_it_renders_and_every_object_is_valid(target: str) -> None:
    docs = rendered(target)
    assert docs
    problems = {
        f"{doc['kind']} {doc['metadata']['name']}": errors
        for doc in docs
        if (errors := schema_errors(json.dumps(doc, sort_keys=True)))
    }
    assert problems == {}, problems
    identities = [(doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]) for doc in docs]
    assert len(identities) == len(set(identities))
    namespaced = [doc for doc in docs if doc["kind"] != "Namespace"]
    assert {doc["metadata"].get("namespace") for doc in namespaced} == {"voxbus"}


# ---------------------------------------------------------------------------------------------
# pods


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_is_non_root_on_a_read_only_root_with_no_capabilities(target: str) -> None:
    user = re.search(r"^USER (\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert user, "the Dockerfile names no numeric USER"
    for deployment, spec in pods(rendered(target)):
        name = deployment["metadata"]["name"]
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, name
        assert pod.get("runAsUser", 0) != 0, name
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, f"{name}/{container['name']}"
            assert context.get("readOnlyRootFilesystem") is True, f"{name}/{container['name']}"
            assert context.get("capabilities") == {"drop": ["ALL"]}, f"{name}/{container['name']}"
            assert context.get("privileged") is not True, f"{name}/{container['name']}"
        if any(is_voxbus(container) for container in spec["containers"]):
            assert pod["runAsUser"] == int(user.group(1)), f"{name} runs as another user than the image's"


@pytest.mark.parametrize("target", TARGETS)
def test_a_pod_with_an_fsgroup_has_its_volumes_walked_only_when_their_root_differs(target: str) -> None:
    """With fsGroup alone, the kubelet changes the group of every file on a volume at each mount:
    on the recordings volume, a walk over every recording before a pod starts."""
    for deployment, spec in pods(rendered(target)):
        context = spec.get("securityContext", {})
        if "fsGroup" in context:
            assert context.get("fsGroupChangePolicy") == "OnRootMismatch", deployment["metadata"]["name"]


@pytest.mark.parametrize("target", TARGETS)
def test_voxbus_writes_only_to_its_volumes(target: str) -> None:
    """The root is read-only: /tmp is an emptyDir, recordings go to the shared claim, which the
    writers mount writable and ingest (downloads) mounts too."""
    docs = rendered(target)
    storage = str(settings_of(docs).audio_storage_path)
    claims: dict[str, set[str]] = {}
    for deployment, spec, container in voxbus_containers(docs):
        name = deployment["metadata"]["name"]
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        mounts = {mount["mountPath"]: mount for mount in container.get("volumeMounts", [])}
        assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]["name"]], f"{name}: no /tmp"
        service = served_service(container)
        if service in ("writer", "ingest"):
            mount = mounts.get(storage)
            assert mount is not None, f"{name} does not mount AUDIO_STORAGE_PATH ({storage})"
            assert (service == "ingest") == bool(mount.get("readOnly")), name
            claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
            claims.setdefault(claim, set()).add(service)
    assert list(claims.values()) == [{"writer", "ingest"}], claims
    (claim,) = claims
    assert "ReadWriteMany" in named(docs, "PersistentVolumeClaim", claim)["spec"]["accessModes"]


@pytest.mark.parametrize("target", TARGETS)
def test_each_service_runs_once_with_probes_on_the_runtime_routes_of_its_http_port(target: str) -> None:
    docs = rendered(target)
    settings = settings_of(docs)
    services = []
    for deployment, _, container in voxbus_containers(docs):
        name = deployment["metadata"]["name"]
        services.append(served_service(container))
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["http"] == settings.port, name
        if services[-1] == "ingest":
            assert ports["wyoming"] == settings.wyoming_port, name
        for probe, path in (
            ("readinessProbe", "/ready"),
            ("livenessProbe", "/health"),
            ("startupProbe", "/health"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}, f"{name} {probe}"
    assert sorted(services) == sorted(SERVICE_NAMES)
    # the routes probed are the ones every process serves
    routes = {resource.canonical for resource in create_app(Settings(_env_file=None), []).router.resources()}
    assert {"/ready", "/health", "/metrics"} <= routes


@pytest.mark.parametrize("target", TARGETS)
def test_a_pod_leaves_the_endpoints_before_it_stops_listening_and_the_grace_period_outlasts_both(
    target: str,
) -> None:
    """On SIGTERM a process closes its listener at once (runtime/serve.py), while Services and the
    Ingress still send it new connections for a few seconds: preStop sleeps that long first. The
    grace period counts from the start of preStop, so it covers the sleep, the drain
    (SHUTDOWN_TIMEOUT_SECONDS) and the cleanup after it (consumers stopped, the producer flushed,
    leases released), for which SHUTDOWN_MARGIN_SECONDS is left."""
    docs = rendered(target)
    drain = settings_of(docs).shutdown_timeout_seconds
    for deployment, spec, container in voxbus_containers(docs):
        name = deployment["metadata"]["name"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {})
        assert list(pre_stop) == ["sleep"], f"{name}: preStop is {pre_stop}, not a sleep"
        sleep = pre_stop["sleep"]["seconds"]
        assert sleep >= PRE_STOP_SECONDS, f"{name}: preStop sleeps {sleep} s"
        grace = spec["terminationGracePeriodSeconds"]
        assert grace > sleep + drain + SHUTDOWN_MARGIN_SECONDS, (
            f"{name}: {grace} s <= preStop {sleep} s + SHUTDOWN_TIMEOUT_SECONDS {drain} "
            f"+ {SHUTDOWN_MARGIN_SECONDS} s"
        )


@pytest.mark.parametrize("target", TARGETS)
def test_every_image_is_pinned(target: str) -> None:
    for deployment, spec in pods(rendered(target)):
        for container in spec["containers"]:
            tag = container["image"].rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{deployment['metadata']['name']}: {container['image']}"


# ---------------------------------------------------------------------------------------------
# configuration


@pytest.mark.parametrize("target", TARGETS)
def test_every_variable_is_a_setting_and_they_load(target: str) -> None:
    docs = rendered(target)
    (configmap,) = of_kind(docs, "ConfigMap")
    (secret,) = of_kind(docs, "Secret")
    for source in (configmap["data"], secret.get("data", {})):
        unknown = [key for key in source if key.lower() not in Settings.model_fields]
        assert unknown == [], f"{unknown} are not voxbus settings"
    settings_of(docs)  # every value valid, together
    for deployment, _, container in voxbus_containers(docs):
        name = deployment["metadata"]["name"]
        # the Secret comes last: a key in both (REDIS_URL with a password) takes its value
        assert container["envFrom"] == [
            {"configMapRef": {"name": configmap["metadata"]["name"]}},
            {"secretRef": {"name": secret["metadata"]["name"], "optional": False}},
        ], name
        unknown = [
            env["name"]
            for env in container.get("env", [])
            if env["name"].lower() not in Settings.model_fields
        ]
        assert unknown == [], f"{name}: {unknown} are not voxbus settings"


def test_the_base_secret_names_every_credential_and_holds_none() -> None:
    (secret,) = of_kind(rendered("base"), "Secret")
    credentials = {
        name.upper() for name in Settings.model_fields if name.endswith(("_key", "_secret", "_token"))
    }
    assert set(secret["data"]) == credentials
    assert all(value == "" for value in secret["data"].values()), "a credential is committed in the base"


PRODUCTION = K8S / "overlays" / "production"


def test_production_does_not_render_without_its_credentials() -> None:
    """Production takes the credentials from a secrets.env the operator writes (gitignored): with
    none, kustomize fails and says which file is missing, rather than deploying voxbus open."""
    assert (PRODUCTION / "secrets.env.example").is_file()
    result = kustomize_build(copy_of_k8s(with_secrets=False) / "overlays" / "production")
    assert result.returncode != 0, "the production overlay renders without secrets.env"
    assert "secrets.env" in result.stderr, result.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_an_overlay_that_asks_for_credentials_gets_every_one(target: str) -> None:
    example = K8S / target / "secrets.env.example"
    if target == "overlays/production":
        assert example.is_file(), "production deploys with no API key and unsigned webhooks"
    if not example.is_file():
        return
    (base,) = of_kind(rendered("base"), "Secret")
    # the example names every credential, once, and kustomize merges it over the base's Secret
    assert sorted(env_keys(example)) == sorted(set(env_keys(example))) == sorted(base["data"])
    lines = example.read_text().splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert value == "", f"{key}: the example holds a value"
            above = next((line for line in reversed(lines[:number]) if not re.fullmatch(r"\w+=", line)), "")
            assert above.startswith("# "), f"{key}: no comment says what it is"
    (secret,) = of_kind(rendered(target), "Secret")
    values = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert values["API_KEY"], "the Secret has no API_KEY"
    assert values == {key: made_up_value(key) for key in base["data"]}
    # and git keeps the operator's file out
    ignored = subprocess.run(
        [
            "git",
            "check-ignore",
            "--quiet",
            "--no-index",
            str((K8S / target / "secrets.env").relative_to(ROOT)),
        ],
        cwd=ROOT,
        check=False,
    )
    assert ignored.returncode == 0, f"{target}/secrets.env is not gitignored"


# ---------------------------------------------------------------------------------------------
# the Ingress


def ingress_backend(ingress: Doc, path: str) -> tuple[str, str] | None:
    """(Service, port name) the Ingress sends `path` to, as Kubernetes defines its matching: the
    longest matching path wins (Exact over Prefix), a Prefix matches whole path elements."""
    best: tuple[tuple[int, bool], tuple[str, str]] | None = None
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            prefix, kind = entry["path"], entry["pathType"]
            assert kind in ("Exact", "Prefix"), f"{prefix}: {kind} matches as the controller likes"
            stripped = prefix.rstrip("/")
            matches = (
                path == prefix if kind == "Exact" else path == stripped or path.startswith(stripped + "/")
            )
            if matches:
                rank = (len(prefix), kind == "Exact")
                service = entry["backend"]["service"]
                if best is None or rank > best[0]:
                    best = (rank, (service["name"], service["port"]["name"]))
    return None if best is None else best[1]


def served_paths(service: Any) -> set[str]:
    app = create_app(Settings(_env_file=None), [service])
    paths = {re.sub(r"\{[^}]+\}", "x", resource.canonical) for resource in app.router.resources()}
    return {path for path in paths if path not in ADMIN_PATHS}


@pytest.mark.parametrize("target", TARGETS)
def test_the_ingress_sends_every_route_where_voxbus_stack_sends_it(target: str) -> None:
    docs = rendered(target)
    (ingress,) = of_kind(docs, "Ingress")
    ingest, telephony = served_paths(INGEST), served_paths(TELEPHONY)
    assert {"/ws", "/ws/audio", "/api/ws/audio", "/api/audio/sessions/x/audio"} <= ingest
    assert {"/vonage/answer", "/vonage/event", "/twilio/voice", "/exotel/stream", "/callback"} <= telephony
    wanted = {path: "voxbus-telephony" for path in telephony - ingest}  # the webhooks and the call API
    wanted |= {path: "voxbus-ingest" for path in ingest}  # and the pages both serve: ingest's, as HAProxy
    for path, service in sorted(wanted.items()):
        assert ingress_backend(ingress, path) == (service, "http"), path
        balancer = "voxbus-telephony" if path.startswith(TELEPHONY_PATHS) else "voxbus-ingest"
        assert balancer == service, f"{path}: voxbus stack's HAProxy sends it to {balancer}"
    for path in ADMIN_PATHS:
        assert ingress_backend(ingress, path) is None, f"{path} is public"
    services = {service["metadata"]["name"]: service for service in of_kind(docs, "Service")}
    for service in ("voxbus-ingest", "voxbus-telephony"):
        assert "http" in {port["name"] for port in services[service]["spec"]["ports"]}


@pytest.mark.parametrize("target", TARGETS)
def test_the_ingress_keeps_websockets_and_is_the_host_carriers_are_sent_to(target: str) -> None:
    docs = rendered(target)
    (ingress,) = of_kind(docs, "Ingress")
    settings = settings_of(docs)
    annotations = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "nginx"  # the annotations are ingress-nginx's
    for direction in ("read", "send"):
        timeout = int(annotations[f"nginx.ingress.kubernetes.io/proxy-{direction}-timeout"])
        # a quiet socket is for voxbus to end (CONNECTION_TIMEOUT_SECONDS), not the proxy
        assert timeout >= 3600 > settings.connection_timeout_seconds, direction
    public = urlsplit(settings.host_name)
    assert public.scheme == "https"
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [public.hostname]
    assert any(public.hostname in tls["hosts"] for tls in ingress["spec"]["tls"])


# ---------------------------------------------------------------------------------------------
# scaling and disruptions


def ingest_gauges() -> set[str]:
    assert ingest_metrics.SOCKETS is not None  # the module is imported: its metrics are registered
    return {
        family.name
        for family in REGISTRY.collect()
        if family.type == "gauge" and family.name.startswith("voxbus_ingest_")
    }


def adapter_rules() -> list[Doc]:
    """The prometheus-adapter rules docs/deploy-kubernetes.md gives."""
    rules = []
    for block in re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.DOTALL):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and isinstance(data.get("rules"), dict):
            rules += data["rules"].get("custom", [])
    return rules


@pytest.mark.parametrize("target", TARGETS)
def test_ingest_scales_on_cpu_and_on_a_gauge_ingest_exports(target: str) -> None:
    docs = rendered(target)
    (autoscaler,) = of_kind(docs, "HorizontalPodAutoscaler")
    reference = autoscaler["spec"]["scaleTargetRef"]
    assert (reference["kind"], reference["name"]) == ("Deployment", "voxbus-ingest")
    ingest = named(docs, "Deployment", "voxbus-ingest")
    assert "replicas" not in ingest["spec"], "a fixed replica count fights the autoscaler on every apply"
    kinds = {metric["type"]: metric for metric in autoscaler["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    metric = kinds["Pods"]["pods"]["metric"]["name"]
    assert metric in ingest_gauges(), f"ingest exports no gauge {metric}"
    # each ingest pod leases one egress partition: more pods than partitions are never ready
    assert 2 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    assert autoscaler["spec"]["maxReplicas"] <= settings_of(docs).egress_partitions
    # the docs give the prometheus-adapter rule that serves it
    served = [rule for rule in adapter_rules() if rule["seriesQuery"].startswith(metric + "{")]
    assert served, f"{DOCS.relative_to(ROOT)} gives no prometheus-adapter rule for {metric}"
    assert all(rule.get("name", {}).get("as", metric) == metric for rule in served)


@pytest.mark.parametrize("target", TARGETS)
def test_every_replicated_service_has_a_disruption_budget_that_lets_a_drain_through(target: str) -> None:
    docs = rendered(target)
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in of_kind(docs, "HorizontalPodAutoscaler")}
    budgets = of_kind(docs, "PodDisruptionBudget")
    for deployment, _ in pods(docs):
        name = deployment["metadata"]["name"]
        labels = pod_labels(deployment)
        replicas = (
            scaled[name]["spec"]["minReplicas"] if name in scaled else deployment["spec"].get("replicas", 1)
        )
        covering = [
            budget for budget in budgets if label_selector_matches(budget["spec"]["selector"], labels)
        ]
        if replicas < 2:
            assert covering == [], f"{name} has one pod: a budget would block every drain"
            continue
        assert len(covering) == 1, f"{name}: {len(covering)} disruption budgets"
        spec = covering[0]["spec"]
        if "maxUnavailable" in spec:
            assert int(spec["maxUnavailable"]) >= 1, name
        else:
            assert int(spec["minAvailable"]) < replicas, name
    for budget in budgets:
        covered = selected(budget["spec"]["selector"], of_kind(docs, "Deployment"), pod_labels)
        assert covered, f"{budget['metadata']['name']} covers no pods"


# ---------------------------------------------------------------------------------------------
# Services and monitoring


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_selects_one_deployment_and_ports_it_has(target: str) -> None:
    docs = rendered(target)
    for service in of_kind(docs, "Service"):
        name = service["metadata"]["name"]
        matched = selected(
            {"matchLabels": service["spec"]["selector"]}, of_kind(docs, "Deployment"), pod_labels
        )
        assert len(matched) == 1, f"{name} selects {len(matched)} Deployments"
        containers = matched[0]["spec"]["template"]["spec"]["containers"]
        ports = {port["name"] for container in containers for port in container.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{name}: no container port {port['targetPort']}"


@pytest.mark.parametrize("target", TARGETS)
def test_servicemonitors_scrape_every_voxbus_pod_one_job_per_service(target: str) -> None:
    docs = rendered(target)
    monitors = of_kind(docs, "ServiceMonitor")
    if target == "overlays/production":
        assert monitors, "the production overlay is scraped through the Prometheus Operator"
    for monitor in monitors:
        spec = monitor["spec"]
        services = selected(spec["selector"], of_kind(docs, "Service"))
        jobs = {service["metadata"]["labels"].get(spec["jobLabel"]) for service in services}
        # the rules and dashboards name no job: jobs named after services are only for people
        assert jobs == set(SERVICE_NAMES), "one job per service, named after it"
        for service in services:
            ports = {port["name"] for port in service["spec"]["ports"]}
            for endpoint in spec["endpoints"]:
                assert endpoint["port"] in ports, (
                    f"{service['metadata']['name']} has no port {endpoint['port']}"
                )
                assert endpoint.get("path", "/metrics") == "/metrics"


def rule_groups() -> list[Doc]:
    groups: list[Doc] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def test_the_prometheus_rule_is_deploy_prometheus_rules_yml() -> None:
    fix = "regenerate it: `uv run --frozen python -m voxbus.devinfra generate`"
    written = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert written["spec"] == {"groups": rule_groups()}, f"{PROMETHEUS_RULE} differs: {fix}"
    assert PROMETHEUS_RULE.read_text() == prometheus_rule.render(RULES.read_text()), (
        f"{PROMETHEUS_RULE} is not as generated: {fix}"
    )
    for target in TARGETS:
        for rule in of_kind(rendered(target), "PrometheusRule"):
            assert rule["spec"] == {"groups": rule_groups()}, f"{target}: {fix}"


RULES_IN_OTHER_STYLES = {
    "indentless sequence": "groups:\n- name: a\n  rules:\n  - record: x\n    expr: up\n",
    "literal block, comments": (
        "# a header\ngroups:  # the only key\n  - name: a\n    rules:\n# at the margin\n"
        "      - alert: A\n        expr: |\n          up\n\n            \n            == 0\n"
        "        annotations: {summary: 'a\n          b'}\n"
    ),
    "no newline at the end": "groups:\n  - name: a\n    rules: []",
}


@pytest.mark.parametrize("text", RULES_IN_OTHER_STYLES.values(), ids=RULES_IN_OTHER_STYLES)
def test_the_prometheus_rule_holds_exactly_the_rules_files_groups(text: str) -> None:
    written = yaml.safe_load(prometheus_rule.render(text))
    assert written["apiVersion"] == "monitoring.coreos.com/v1"
    assert written["kind"] == "PrometheusRule"
    assert written["spec"] == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text",
    [
        "groups:\n  - name: a\nother: 1\n",  # a key the PrometheusRule's spec does not take
        "---\ngroups: []\n",  # documents
        "groups: [{name: a, rules: []}]\n",  # flow style on the key's line
        "# nothing but a comment\n",
    ],
)
def test_the_prometheus_rule_refuses_a_rules_file_that_is_not_only_groups(text: str) -> None:
    with pytest.raises(ValueError, match="groups"):
        prometheus_rule.render(text)


def test_the_prometheus_rule_is_written_where_the_component_lists_it(tmp_path: Path) -> None:
    (tmp_path / prometheus_rule.SOURCE).parent.mkdir(parents=True)
    (tmp_path / prometheus_rule.SOURCE).write_text(RULES.read_text())
    assert prometheus_rule.write(tmp_path) == tmp_path / prometheus_rule.TARGET
    assert (tmp_path / prometheus_rule.TARGET).read_text() == PROMETHEUS_RULE.read_text()
    component = yaml.safe_load((PROMETHEUS_RULE.parent / "kustomization.yaml").read_text())
    assert PROMETHEUS_RULE.name in component["resources"]


# ---------------------------------------------------------------------------------------------
# Kafka and Redis in the cluster


@pytest.mark.parametrize("target", TARGETS)
def test_in_cluster_kafka_and_redis_are_where_the_configmap_points(target: str) -> None:
    docs = rendered(target)
    kafkas = of_kind(docs, "Kafka")
    if target == "overlays/dev":
        assert kafkas, "the dev overlay runs Kafka in the cluster"
    settings = settings_of(docs)
    for kafka in kafkas:
        name = kafka["metadata"]["name"]
        plain = [
            listener
            for listener in kafka["spec"]["kafka"]["listeners"]
            if listener["type"] == "internal"
            and listener["tls"] is False
            and "authentication" not in listener
        ]
        # Strimzi's bootstrap Service; voxbus's client speaks neither TLS nor SASL
        bootstraps = {f"{name}-kafka-bootstrap:{listener['port']}" for listener in plain}
        assert settings.kafka_bootstrap_servers in bootstraps, (
            f"KAFKA_BOOTSTRAP_SERVERS is not one of {bootstraps}"
        )
        pools = selected({"matchLabels": {"strimzi.io/cluster": name}}, of_kind(docs, "KafkaNodePool"))
        roles = {role for pool in pools for role in pool["spec"]["roles"]}
        assert roles == {"controller", "broker"}, "KRaft: controllers and brokers in node pools"
        brokers = sum(pool["spec"]["replicas"] for pool in pools if "broker" in pool["spec"]["roles"])
        assert 1 <= settings.kafka_replication_factor <= brokers
        replication = kafka["spec"]["kafka"]["config"]["offsets.topic.replication.factor"]
        assert replication <= brokers
    if kafkas:  # and Redis beside it
        assert settings.redis_url is not None
        url = urlsplit(settings.redis_url)
        redis = named(docs, "Service", str(url.hostname))
        assert url.port in {port["port"] for port in redis["spec"]["ports"]}


def peers_admit(peers: list[Doc] | None, labels: dict[str, str]) -> bool:
    """Whether a NetworkPolicy rule's `from` (or a Strimzi listener's networkPolicyPeers, the same
    list) admits a pod of the namespace with `labels`: none given admits every source."""
    if not peers:
        return True
    for peer in peers:
        assert set(peer) == {"podSelector"}, f"a peer beyond the namespace's pods: {peer}"
    return any(label_selector_matches(peer["podSelector"], labels) for peer in peers)


def policies_admit(policies: list[Doc], labels: dict[str, str], port: set[int | str]) -> bool:
    """Whether NetworkPolicies selecting a pod let a pod with `labels` connect to `port` (its
    number or its name): with no policy selecting the pod, everything may."""
    if not policies:
        return True
    return any(
        peers_admit(rule.get("from"), labels)
        for policy in policies
        if "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        for rule in policy["spec"].get("ingress", [])
        if "ports" not in rule or any(entry.get("port") in port for entry in rule["ports"])
    )


@pytest.mark.parametrize("target", TARGETS)
def test_in_cluster_kafka_and_redis_take_connections_from_voxbus_pods_only(target: str) -> None:
    """Both are spoken to in plain text with no password: in the cluster, NetworkPolicies (Strimzi
    makes Kafka's from its listener's networkPolicyPeers) keep every other pod out."""
    docs = rendered(target)
    if not of_kind(docs, "Kafka"):
        return
    settings = settings_of(docs)
    voxbus = [pod_labels(deployment) for deployment, _, _ in voxbus_containers(docs)]
    stranger = {"app.kubernetes.io/name": "something-else"}
    # Kafka: the listener KAFKA_BOOTSTRAP_SERVERS names
    (kafka,) = of_kind(docs, "Kafka")
    port = int(str(settings.kafka_bootstrap_servers).rpartition(":")[2])
    (listener,) = [entry for entry in kafka["spec"]["kafka"]["listeners"] if entry["port"] == port]
    peers = listener.get("networkPolicyPeers")
    assert peers, "Kafka's plain listener takes connections from any pod"
    assert all(peers_admit(peers, labels) for labels in voxbus), "a voxbus pod cannot reach Kafka"
    assert not peers_admit(peers, stranger)
    # Redis: the pods behind the Service REDIS_URL names, on the port it sends to
    assert settings.redis_url is not None
    url = urlsplit(settings.redis_url)
    service = named(docs, "Service", str(url.hostname))
    (deployment,) = selected(
        {"matchLabels": service["spec"]["selector"]}, of_kind(docs, "Deployment"), pod_labels
    )
    (target_port,) = [entry["targetPort"] for entry in service["spec"]["ports"] if entry["port"] == url.port]
    container_port = {
        (entry["name"], entry["containerPort"])
        for container in deployment["spec"]["template"]["spec"]["containers"]
        for entry in container.get("ports", [])
        if target_port in (entry.get("name"), entry["containerPort"])
    }
    (named_port,) = container_port
    policies = [
        policy
        for policy in of_kind(docs, "NetworkPolicy")
        if label_selector_matches(policy["spec"]["podSelector"], pod_labels(deployment))
    ]
    assert policies, "Redis takes connections from any pod"
    assert all(policies_admit(policies, labels, set(named_port)) for labels in voxbus), (
        "a voxbus pod cannot reach Redis"
    )
    assert not policies_admit(policies, stranger, set(named_port))
