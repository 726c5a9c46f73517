"""`api` removes the metrics folders of api processes that were killed, and only those."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gateway import cli


def test_only_folders_of_dead_api_processes_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"dicom-gateway-metrics-{dead.pid}-abc123"
    live = tmp_path / f"dicom-gateway-metrics-{os.getpid()}-def456"
    unrelated = tmp_path / "dicom-gateway-metrics-notapid"
    for folder in (orphan, live, unrelated):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"x")

    cli._remove_orphan_metrics_dirs()

    assert not orphan.exists()
    assert live.exists()
    assert unrelated.exists()
