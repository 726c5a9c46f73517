"""Structured logs: lines below the level are dropped, the others carry their context, as text or JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from gateway.logging import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_lines_below_the_level_are_dropped(level: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level, "json")
    log = structlog.get_logger("gateway.test")
    log.debug("below.debug", key="a")
    log.info("an.info", key="b")
    log.warning("a.warning", key="c")
    events = [line["event"] for line in lines(capsys)]
    assert events == (["an.info", "a.warning"] if level == "INFO" else ["a.warning"])


def test_a_line_carries_its_level_logger_context_and_exception(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", "json")
    structlog.contextvars.bind_contextvars(association="7")
    log = structlog.get_logger("gateway.test").bind(calling_ae="CT01")
    log.debug("a.debug", key="k")
    try:
        raise ValueError("broken")
    except ValueError:
        log.exception("it.failed")
    first, second = lines(capsys)
    assert first["event"] == "a.debug" and first["level"] == "debug" and first["logger"] == "gateway.test"
    assert (first["key"], first["calling_ae"], first["association"]) == ("k", "CT01", "7")
    assert second["level"] == "error" and "ValueError: broken" in str(second["exception"])


def test_foreign_loggers_are_quieted_but_keep_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", "console")
    logging.getLogger("pynetdicom").info("a PDU")
    logging.getLogger("pynetdicom").warning("a peer misbehaved")
    err = capsys.readouterr().err
    assert "a peer misbehaved" in err and "a PDU" not in err
