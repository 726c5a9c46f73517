"""Browser check: the OHIF viewer (prebuilt, from the npm registry) lists and renders studies from the gateway.

OHIF is served from its own origin, as a hospital would deploy it, so this also checks CORS. Debian's
Chromium is driven by playwright-core (tests/browser); a screenshot is saved in the test's tmp dir.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from pydicom import dcmread
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gateway.services import Services
from testdata.generate import generate_corpus
from tests.fixtures.gateway import gateway_services, make_settings
from tests.fixtures.http import running_api
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration

OHIF_VERSION = "3.13.2"
ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "browser"
CACHE = ROOT / ".cache" / "ohif" / OHIF_VERSION
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

APP_CONFIG = """window.config = {{
  routerBasename: '/',
  extensions: [], modes: [], showStudyList: true, maxNumberOfWebWorkers: 2,
  defaultDataSourceName: 'gateway',
  dataSources: [{{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'gateway',
    configuration: {{
      friendlyName: 'dicom-gateway', name: 'gateway',
      wadoUriRoot: '{root}/wado', qidoRoot: '{root}', wadoRoot: '{root}',
      qidoSupportsIncludeField: true, imageRendering: 'wadors', thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true, supportsFuzzyMatching: true, supportsWildcard: true,
      staticWado: false, singlepart: 'bulkdata,video',
      bulkDataURI: {{ enabled: true, relativeResolution: 'studies' }},
    }},
  }}],
}};
"""


def _ohif_dist() -> Path:
    dist = CACHE / "package" / "dist"
    if dist.is_dir():
        return dist
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed, so the OHIF viewer cannot be fetched (apt-get install npm)")
    CACHE.mkdir(parents=True, exist_ok=True)
    packed = subprocess.run(
        ["npm", "pack", f"@ohif/app@{OHIF_VERSION}", "--pack-destination", str(CACHE)],
        capture_output=True,
        text=True,
    )
    if packed.returncode != 0:
        pytest.skip(f"npm pack @ohif/app@{OHIF_VERSION} failed (no npm registry?): {packed.stderr[-300:]}")
    with tarfile.open(CACHE / packed.stdout.strip().splitlines()[-1]) as archive:
        archive.extractall(CACHE, filter="data")
    return dist


def _playwright() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    if shutil.which("node") is None:
        pytest.skip("node is not installed (apt-get install nodejs npm)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        installed = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, capture_output=True)
        if installed.returncode != 0:
            pytest.skip(f"npm ci in tests/browser failed: {installed.stderr.decode()[-300:]}")


class _ViewerFiles(StaticFiles):
    """OHIF's dist with our app-config.js, and index.html for client-side routes like /viewer."""

    def __init__(self, directory: Path, config: str) -> None:
        super().__init__(directory=directory)
        self.config = config

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path == "app-config.js":
            return Response(self.config, media_type="application/javascript")
        try:
            return await super().get_response(path, scope)
        except HTTPException as error:
            if error.status_code != 404:
                raise
            return await super().get_response("index.html", scope)


@pytest.fixture
def viewer_port() -> int:
    return free_port()


@pytest.fixture
def services(tmp_path: Path, broker_url: str, viewer_port: int) -> Iterator[Services]:
    settings = make_settings(tmp_path / "data", broker_url=broker_url, cors_origins=[f"http://127.0.0.1:{viewer_port}"])
    with gateway_services(settings) as services:
        for path in generate_corpus(tmp_path / "corpus"):
            services.indexing.index_object(services.ingest.ingest_file(path.read_bytes()).key)
        yield services


def test_ohif_lists_the_studies_and_renders_an_image(tmp_path: Path, services: Services, viewer_port: int) -> None:
    dist = _ohif_dist()
    _playwright()
    ct = dcmread(tmp_path / "corpus" / "ct" / "series1" / "001.dcm", stop_before_pixels=True)
    with running_api(services) as api:
        viewer = uvicorn.Server(
            uvicorn.Config(
                _ViewerFiles(dist, APP_CONFIG.format(root=f"{api}/dicomweb")),
                host="127.0.0.1",
                port=viewer_port,
                log_config=None,
                access_log=False,
            )
        )
        thread = threading.Thread(target=viewer.run, daemon=True)
        thread.start()
        while not viewer.started:
            time.sleep(0.05)
        try:
            screenshot = tmp_path / "ohif.png"
            run = subprocess.run(
                [
                    "node",
                    str(BROWSER_DIR / "ohif_check.mjs"),
                    f"http://127.0.0.1:{viewer_port}",
                    str(ct.StudyInstanceUID),
                    str(ct.StudyDescription),
                    str(screenshot),
                ],
                capture_output=True,
                text=True,
                timeout=240,
                env={"PATH": "/usr/bin:/bin", "CHROMIUM": CHROMIUM, "HOME": str(tmp_path)},
            )
        finally:
            viewer.should_exit = True
            thread.join(timeout=10)
    result = json.loads(run.stdout or "{}")
    assert result.get("listed"), (result, run.stderr[-2000:])
    assert result.get("rendered"), (result, run.stderr[-2000:])
    assert result["nonBlackPixels"] > 100
    assert screenshot.stat().st_size > 10_000
