"""docker-compose.yml held to the code (Docker itself cannot run here): every voxbus command is
one the CLI takes, every environment variable is a setting, ports and volumes agree with what
the services listen on and write to, HAProxy and Prometheus are configured by the same code as
`voxbus stack`, and every image is built from this repository or pinned by tag."""

import re
from pathlib import Path
from typing import Any

import yaml

from voxbus.cli.main import build_parser
from voxbus.common.constants import SERVICE_NAMES
from voxbus.common.settings import Settings
from voxbus.devinfra import dashboards
from voxbus.devinfra.stack import haproxy_config, prometheus_config

ROOT = Path(__file__).parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
VOXBUS = {name: service for name, service in SERVICES.items() if service.get("build")}
PORT = "8000"


def served(service: dict[str, Any]) -> str:
    args = build_parser().parse_args(service["command"])
    assert args.command == "serve"
    return str(args.service)


def test_every_voxbus_container_runs_a_command_the_cli_takes_and_every_service_runs() -> None:
    names = {name: served(service) for name, service in VOXBUS.items()}
    assert set(names.values()) == set(SERVICE_NAMES)
    assert [name for name, service in names.items() if service == "ingest"] == ["ingest-1", "ingest-2"]
    assert [name for name, service in names.items() if service == "telephony"] == [
        "telephony-1",
        "telephony-2",
    ]
    assert all(service["environment"]["POD_NAME"] == name for name, service in VOXBUS.items())


def test_every_environment_variable_is_a_setting() -> None:
    for name, service in VOXBUS.items():
        unknown = [key for key in service["environment"] if key.lower() not in Settings.model_fields]
        assert unknown == [], f"{name}: {unknown} are not voxbus settings"
        Settings(**{key.lower(): value for key, value in service["environment"].items()})


def test_images_are_built_here_or_pinned_by_tag() -> None:
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["build"] == "." and (ROOT / "Dockerfile").is_file(), name
            continue
        image, _, tag = service["image"].rpartition(":")
        assert image and re.fullmatch(r"v?\d+(\.\d+)+(-[a-z]+)?", tag), (
            f"{name}: {service['image']} is not pinned"
        )


def test_ports_agree_with_what_the_services_listen_on() -> None:
    assert {service["environment"]["PORT"] for service in VOXBUS.values()} == {PORT}
    assert SERVICES["haproxy"]["ports"] == [f"{PORT}:{PORT}"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^EXPOSE {PORT}\b", dockerfile, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.MULTILINE)
    assert re.search(r"^USER (?!0\b|root\b)", dockerfile, re.MULTILINE)


def test_haproxy_and_prometheus_are_configured_as_voxbus_stack_configures_them() -> None:
    """Regenerate both files with these calls when the routing or the scraping changes."""
    by_service: dict[str, list[str]] = {}
    for name, service in VOXBUS.items():
        by_service.setdefault(served(service), []).append(f"{name}:{PORT}")
    ingests = [(address.split(":")[0], address) for address in by_service["ingest"]]
    telephonies = [(address.split(":")[0], address) for address in by_service["telephony"]]
    haproxy = haproxy_config(f"*:{PORT}", ingests, telephonies)
    assert (ROOT / "deploy/compose/haproxy.cfg").read_text() == haproxy
    rules = "/etc/prometheus/rules.yml"
    assert (ROOT / "deploy/compose/prometheus.yml").read_text() == prometheus_config(by_service, Path(rules))
    assert f"./deploy/prometheus/rules.yml:{rules}:ro" in SERVICES["prometheus"]["volumes"]


def test_volumes_are_declared_mounted_where_used_and_files_exist() -> None:
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} is not in the repository"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
    for name in ("ingest-1", "ingest-2", "writer"):  # the writer writes, the ingests serve downloads
        storage = VOXBUS[name]["environment"]["AUDIO_STORAGE_PATH"]
        assert f"recordings:{storage}" in VOXBUS[name]["volumes"], name


def test_grafana_provisions_the_dashboards_voxbus_writes_on_the_data_source_they_name() -> None:
    """Regenerate the JSON with `python -m voxbus.devinfra generate` when a dashboard changes."""
    directory = ROOT / dashboards.DIRECTORY
    assert sorted(p.name for p in directory.glob("*.json")) == sorted(
        d.file_name for d in dashboards.DASHBOARDS
    )
    for dashboard in dashboards.DASHBOARDS:
        assert (directory / dashboard.file_name).read_text() == dashboards.render(dashboard), dashboard.uid
    provisioning = ROOT / "deploy/grafana/provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards/voxbus.yml").read_text())["providers"]
    mounted = f"./{dashboards.DIRECTORY}:{provider['options']['path']}:ro"
    assert mounted in SERVICES["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in SERVICES["grafana"]["volumes"]
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert source["uid"] == dashboards.DATASOURCE["uid"] and source["type"] == dashboards.DATASOURCE["type"]
    assert source["url"] == "http://prometheus:9090" and "9090:9090" in SERVICES["prometheus"]["ports"]
    uids = [dashboard.uid for dashboard in dashboards.DASHBOARDS]
    assert len(set(uids)) == len(uids)
