"""Fixtures of the FHIR unit tests: the corpus indexed once, and the official R4 JSON Schema when node is here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import Engine

from gateway.index.db import make_engine, migrate
from gateway.index.repository import IndexRepository
from gateway.indexing import IndexingService
from testdata.generate import generate_corpus, pydicom_test_files
from tests.fakes import MemoryStore
from tests.fixtures.fhir_server import SchemaValidator
from tests.fixtures.fhir_server import schema_validator as start_schema_validator


def index_files(engine: Engine, paths: list[Path]) -> None:
    """Store and index `paths` the way the worker does (IndexingService), into `engine`'s index."""
    indexing = IndexingService(MemoryStore(), IndexRepository(engine))
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        key = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        indexing.store.put(key, path.read_bytes())
        indexing.index_object(key)


@pytest.fixture(scope="session")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The synthetic corpus and the bundled pydicom files."""
    return [*generate_corpus(tmp_path_factory.mktemp("corpus")), *pydicom_test_files()]


@pytest.fixture(scope="session")
def corpus_engine(tmp_path_factory: pytest.TempPathFactory, corpus_files: list[Path]) -> Engine:
    """A SQLite index holding the whole corpus, indexed by the real IndexingService."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('index') / 'index.sqlite'}")
    migrate(engine)
    index_files(engine, corpus_files)
    return engine


@pytest.fixture(scope="session")
def schema_validator(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SchemaValidator]:
    """The FHIR R4 JSON Schema validator; skipped when node/npm or the registry is not reachable."""
    yield from start_schema_validator(pytestconfig, tmp_path_factory)
