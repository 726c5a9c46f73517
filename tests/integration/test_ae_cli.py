"""`dicom-gateway ae …` as an admin runs it, and the settings' declarative AE list applied at start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.gateway import gateway_services, make_settings, running_scp
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def listed(env: dict[str, str], *options: str) -> dict[str, dict[str, object]]:
    result = run_cli("ae", "list", "--json", *options, env=env)
    assert result.returncode == 0, result.stderr
    return {entry["ae_title"]: entry for entry in json.loads(result.stdout)}


def test_add_list_update_remove(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data")}
    added = run_cli("ae", "add", "CT01", "10.0.0.5", "104", "--operations", "store", "--description", "CT", env=env)
    assert added.returncode == 0, added.stderr
    assert run_cli("ae", "add", "PACS", "pacs.example.org", "11112", "--tls", env=env).returncode == 0
    entries = listed(env)
    assert entries["CT01"] == {
        "ae_title": "CT01",
        "host": "10.0.0.5",
        "port": 104,
        "description": "CT",
        "operations": ["store"],
        "tls": False,
        "enabled": True,
        "source": "admin",
    }
    assert entries["PACS"]["operations"] == ["store", "find", "move", "get", "destination"]
    assert entries["PACS"]["tls"] is True
    text = run_cli("ae", "list", env=env).stdout
    assert "CT01" in text and "10.0.0.5:104" in text and "PACS" in text

    updated = run_cli("ae", "update", "CT01", "--operations", "store,find", "--disabled", "--port", "4242", env=env)
    assert updated.returncode == 0, updated.stderr
    entry = listed(env)["CT01"]
    assert (entry["operations"], entry["enabled"], entry["port"], entry["host"]) == (
        ["store", "find"],
        False,
        4242,
        "10.0.0.5",
    )

    assert run_cli("ae", "remove", "CT01", env=env).returncode == 0
    assert "CT01" not in listed(env)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["add", "WAY-TOO-LONG-AE-TITLE", "h", "104"], 2, "invalid ae_title"),
        (["add", "BAD\\AE", "h", "104"], 2, "invalid ae_title"),
        (["add", "GOOD", "h", "70000"], 2, "invalid port"),
        (["add", "GOOD", "h", "104", "--operations", "store,fly"], 2, "unknown operation"),
        (["update", "NOBODY", "--port", "1"], 1, "not registered"),
        (["remove", "NOBODY"], 1, "not registered"),
        (["echo", "NOBODY"], 1, "not registered"),
    ],
)
def test_mistakes_are_one_line_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data")}
    result = run_cli("ae", *args, env=env)
    assert result.returncode == code, result
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_adding_the_same_title_twice_is_refused(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data")}
    assert run_cli("ae", "add", "CT01", "h", "104", env=env).returncode == 0
    again = run_cli("ae", "add", " CT01 ", "other", "105", env=env)
    assert again.returncode == 1 and "already registered" in again.stderr


def test_echo_prints_status_and_round_trip_time(tmp_path: Path, broker_url: str) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "cli")}
    with (
        gateway_services(make_settings(tmp_path / "data", broker_url=broker_url)) as services,
        running_scp(services) as port,
    ):
        assert run_cli("ae", "add", "DICOMGW", "127.0.0.1", str(port), env=env).returncode == 0
        assert run_cli("ae", "add", "GONE", "127.0.0.1", str(free_port()), env=env).returncode == 0
        ok = run_cli("ae", "echo", "DICOMGW", env=env)
        down = run_cli("ae", "echo", "GONE", "--timeout", "3", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"C-ECHO DICOMGW at 127.0.0.1:{port}: Success (0x0000) in ")
    assert ok.stdout.rstrip().endswith(" ms")
    assert down.returncode == 1
    assert "C-ECHO GONE" in down.stdout and "failed" in down.stdout


def test_declared_aes_are_applied_at_start_up(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data")}
    config.write_text(
        """
association_policy = "registered"

[[remote_aes]]
ae_title = "CT01"
host = "10.0.0.5"
port = 104
operations = ["store"]

[[remote_aes]]
ae_title = "WS01"
host = "10.0.0.9"
port = 11112
description = "reading room"
"""
    )
    assert run_cli("ae", "add", "BYHAND", "h", "104", env=env).returncode == 0
    assert run_cli("migrate", "--config", str(config), env=env).returncode == 0
    entries = listed(env)
    assert set(entries) == {"BYHAND", "CT01", "WS01"}
    assert entries["CT01"]["source"] == "config" and entries["CT01"]["operations"] == ["store"]
    assert entries["WS01"]["description"] == "reading room" and entries["BYHAND"]["source"] == "admin"

    config.write_text('[[remote_aes]]\nae_title = "CT01"\nhost = "10.0.0.6"\nport = 104\noperations = ["store"]\n')
    assert run_cli("migrate", "--config", str(config), env=env).returncode == 0
    entries = listed(env)
    assert set(entries) == {"BYHAND", "CT01"}  # WS01 was declared before and is not any more
    assert entries["CT01"]["host"] == "10.0.0.6"

    bad = tmp_path / "bad.toml"
    bad.write_text('[[remote_aes]]\nae_title = "CT01"\nhost = "h"\nport = 0\n')
    result = run_cli("migrate", "--config", str(bad), env=env)
    assert result.returncode == 2 and "GATEWAY_REMOTE_AES" in result.stderr
