"""The command line as a user runs it: import with a summary, one-line configuration errors, migrate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from gateway.queue import INDEX_QUEUE, REINDEX_BATCH
from tests.factories import make_dataset, write_part10
from tests.fixtures.gateway import make_settings, queued_index_keys, settings_env
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_import_reports_imported_present_and_rejected_files(tmp_path: Path, broker_url: str) -> None:
    folder = tmp_path / "incoming" / "nested"
    folder.mkdir(parents=True)
    good = [write_part10(make_dataset(), folder / f"{n}.dcm") for n in range(3)]
    (folder / "notes.txt").write_text("not a DICOM file")
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_BROKER_URL": broker_url}
    assert run_cli("migrate", env=env).returncode == 0

    first = run_cli("import", str(tmp_path / "incoming"), env=env)
    assert first.returncode == 1  # one file was rejected
    assert "imported 3, already present 0, rejected 1" in first.stdout
    assert "notes.txt" in first.stderr and "no DICM prefix" in first.stderr
    assert redis.Redis.from_url(broker_url).llen(INDEX_QUEUE) == 3

    again = run_cli("import", *map(str, good), env=env)
    assert again.returncode == 0, again.stderr
    assert "imported 0, already present 3, rejected 0" in again.stdout
    objects = sorted(p.name for p in (tmp_path / "data" / "objects").rglob("*.dcm"))
    assert len(objects) == 3


def test_import_without_broker_says_how_to_fix_it(tmp_path: Path) -> None:
    path = write_part10(make_dataset(), tmp_path / "a.dcm")
    result = run_cli("import", str(path), env={"GATEWAY_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 2
    assert "GATEWAY_BROKER_URL" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"), [("GATEWAY_DICOM_PORT", "0"), ("GATEWAY_AE_TITLE", "WAY_TOO_LONG_AE_TITLE")]
)
def test_wrong_setting_stops_startup_with_one_line(tmp_path: Path, variable: str, value: str) -> None:
    result = run_cli("serve", env={"GATEWAY_DATA_DIR": str(tmp_path / "data"), variable: value})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"invalid setting {variable}")
    assert not (tmp_path / "data").exists()


def test_reindex_queues_every_stored_instance_in_batches(tmp_path: Path, broker_url: str) -> None:
    settings = make_settings(tmp_path / "data", broker_url=broker_url)
    env = settings_env(settings)
    datasets = [make_dataset() for _ in range(3)]
    files = [write_part10(ds, tmp_path / f"{n}.dcm") for n, ds in enumerate(datasets)]
    assert run_cli("migrate", env=env).returncode == 0
    assert run_cli("import", *map(str, files), env=env).returncode == 0
    broker = redis.Redis.from_url(broker_url)
    broker.delete(INDEX_QUEUE)  # the tasks are lost (a broker restored without its data, say)
    (tmp_path / "data" / "objects" / "notes.txt").write_text("not an instance")

    result = run_cli("reindex", "--batch", "2", env=env)
    assert result.returncode == 0, result.stderr
    assert "queued 3 objects for indexing, skipped 1" in result.stdout
    assert broker.llen(INDEX_QUEUE) == 2  # batches of 2 and 1
    tasks = {json.loads(raw)["headers"]["task"] for raw in broker.lrange(INDEX_QUEUE, 0, -1)}
    assert tasks == {REINDEX_BATCH}  # the worker checks the seals of objects a crash may have torn

    stored = {f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm" for ds in datasets}
    assert queued_index_keys(broker) == stored  # what a worker indexes (tests/integration/test_worker_faults.py)


def test_reindex_without_a_broker_fails_with_the_reason(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    env["GATEWAY_BROKER_TIMEOUT"] = "0.5"
    path = write_part10(make_dataset(), tmp_path / "objects-source.dcm")
    store = tmp_path / "data" / "objects" / "1.2" / "1.3"
    store.mkdir(parents=True)
    (store / "1.4.dcm").write_bytes(path.read_bytes())
    result = run_cli("reindex", env=env)
    assert result.returncode == 1
    assert "task broker unavailable" in result.stderr
