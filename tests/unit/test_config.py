"""Settings: defaults of DESIGN.md, GATEWAY_* variables, TOML files, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigError


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert (settings.ae_title, settings.dicom_port, settings.http_host, settings.http_port) == (
        "DICOMGW",
        11112,
        "127.0.0.1",
        8080,
    )
    assert settings.resolved_index_url == f"sqlite:///{tmp_path / 'gateway-data' / 'index.sqlite'}"
    assert settings.resolved_storage_url == (tmp_path / "gateway-data" / "objects").as_uri()
    assert settings.broker_url == ""


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_AE_TITLE", "  ARCHIVE ")
    monkeypatch.setenv("GATEWAY_DICOM_PORT", "4242")
    settings = load_settings()
    assert settings.ae_title == "ARCHIVE"
    assert settings.dicom_port == 4242


def test_toml_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('ae_title = "FROMTOML"\nhttp_port = 9090\n')
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "9191")
    settings = load_settings(config)
    assert settings.ae_title == "FROMTOML"
    assert settings.http_port == 9191


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GATEWAY_DICOM_PORT", "70000", "invalid setting GATEWAY_DICOM_PORT"),
        ("GATEWAY_DICOM_PORT", "abc", "invalid setting GATEWAY_DICOM_PORT"),
        ("GATEWAY_AE_TITLE", "A" * 17, "invalid setting GATEWAY_AE_TITLE"),
        ("GATEWAY_AE_TITLE", "BAD\\AE", "invalid setting GATEWAY_AE_TITLE"),
        ("GATEWAY_INDEX_URL", "mysql://x", "invalid setting GATEWAY_INDEX_URL"),
        ("GATEWAY_STORAGE_URL", "ftp://x", "invalid setting GATEWAY_STORAGE_URL"),
        ("GATEWAY_BROKER_URL", "amqp://x", "invalid setting GATEWAY_BROKER_URL"),
    ],
)
def test_wrong_value_names_the_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    text = str(error.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_unknown_toml_key_and_missing_file_are_reported(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("no_such_setting = 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        load_settings(config)
    with pytest.raises(ConfigError, match="--config"):
        load_settings(tmp_path / "missing.toml")


def test_the_example_configuration_loads_and_names_every_setting() -> None:
    import re

    from gateway.config import Settings

    example = Path(__file__).resolve().parents[2] / "docs" / "configuration.example.toml"
    load_settings(config_file=example)
    named = set(re.findall(r"^#?\s*([a-z_0-9]+) = ", example.read_text(), flags=re.MULTILINE))
    assert set(Settings.model_fields) - named == set()
