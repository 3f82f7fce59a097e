"""Settings: seed variable names, `.env`, lists, and errors that name the variable."""

import subprocess
import sys
from pathlib import Path

import pytest

from voxbus.common.constants import Topic
from voxbus.common.settings import SettingsError, load_settings


def test_defaults_need_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.port == 8000
    assert settings.kafka_bootstrap_servers is None
    assert settings.redis_url is None
    assert settings.default_sample_rate == 44100
    assert settings.segment_seconds == 30.0
    assert settings.echo_delay_ms == 1000
    assert settings.topic(Topic.AUDIO_RAW) == "voxbus.audio.raw"
    assert settings.topic_partitions() == {
        "voxbus.audio.raw": 12,
        "voxbus.audio.pcm": 12,
        "voxbus.egress": 64,
        "voxbus.events": 12,
    }


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PORT=9001\nDEFAULT_SAMPLE_RATE=16000\nAPI_KEY=k1, k2\nLOG_LEVEL=DEBUG\n")
    monkeypatch.setenv("PORT", "9002")  # the environment wins over .env
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("REDIS_URL", "")
    monkeypatch.setenv("TOPIC_PREFIX", "staging.")
    settings = load_settings()
    assert settings.port == 9002
    assert settings.default_sample_rate == 16000
    assert settings.api_key == ("k1", "k2")
    assert settings.log_level == "DEBUG"
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.redis_url is None  # empty means unset: in-process store
    assert settings.topic(Topic.EGRESS) == "staging.egress"


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_vonage_sample_rate_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rate: int
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VONAGE_SAMPLE_RATE", str(rate))
    assert load_settings().vonage_sample_rate == rate


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "eighty"),
        ("DEFAULT_SAMPLE_RATE", "12345"),
        ("DEFAULT_FORMAT", "speex"),
        ("MAX_CONCURRENT_SESSIONS", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("SEGMENT_SECONDS", "-1"),
        ("VONAGE_SAMPLE_RATE", "44100"),
        ("TELEPHONY_MODE", "loud"),
        ("HOST_NAME", "voxbus.example.com"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert f"{variable}:" in str(raised.value)
    assert repr(value) in str(raised.value)


def test_the_default_pod_name_is_unique_per_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOSTNAME", "node-7")
    monkeypatch.delenv("POD_NAME", raising=False)
    here = load_settings().pod_name
    probe = "from voxbus.common.settings import load_settings; print(load_settings().pod_name)"
    other = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.strip()
    assert here.startswith("node-7-") and other.startswith("node-7-")  # two processes, one host
    assert here != other
    monkeypatch.setenv("POD_NAME", "")  # empty means unset
    assert load_settings().pod_name == here
    monkeypatch.setenv("POD_NAME", "ingest-0")  # given (Kubernetes: metadata.name): kept as given
    assert load_settings().pod_name == "ingest-0"


def test_exotel_credentials_come_in_pairs_and_the_error_shows_no_value() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(exotel_api_key="exo-key-value")
    assert "EXOTEL_API_KEY and EXOTEL_API_TOKEN are set together" in str(refused.value)
    assert "exo-key-value" not in str(refused.value)


def test_allowed_ips_and_trusted_proxies_are_lists_of_networks() -> None:
    settings = load_settings(exotel_allowed_ips="10.0.0.0/8, 203.0.113.7", trusted_proxies="::1")
    assert [str(network) for network in settings.exotel_allowed_ips] == ["10.0.0.0/8", "203.0.113.7/32"]
    assert [str(network) for network in settings.trusted_proxies] == ["::1/128"]
    with pytest.raises(SettingsError) as refused:
        load_settings(exotel_allowed_ips="10.0.0/33")
    assert "EXOTEL_ALLOWED_IPS" in str(refused.value)
