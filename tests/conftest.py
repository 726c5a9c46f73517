"""Shared test setup: real-server fixtures, and no GATEWAY_* variable leaking in from the shell."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.s3"]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
