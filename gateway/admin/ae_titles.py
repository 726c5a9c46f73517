"""The remote AE registry: which AEs may store, query and retrieve, and where C-MOVE sends instances.

The registry lives in the index database, so every SCP and API process sees the same entries and a
change applies to the next association without a restart. CLI, REST and the settings' declarative
list all go through this one service.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import ALL_OPERATIONS, Operation, RemoteAESetting, validate_ae_title
from gateway.errors import GatewayError, IndexUnavailable, InvalidQuery, NotFound
from gateway.index.ae_models import RemoteAE

SOURCE_ADMIN = "admin"
SOURCE_CONFIG = "config"


class UnknownAE(NotFound):
    """No remote AE with this title is registered."""


class AEAlreadyRegistered(GatewayError):
    """A remote AE with this title is registered already."""


class InvalidAE(InvalidQuery):
    """A registry entry has a value the registry does not accept (title, host, port or operation)."""


@dataclass(frozen=True)
class RemoteAETitle:
    """A registry entry, detached from the database."""

    ae_title: str
    host: str
    port: int
    description: str = ""
    operations: frozenset[Operation] = field(default_factory=lambda: frozenset(ALL_OPERATIONS))
    tls: bool = False
    enabled: bool = True
    source: str = SOURCE_ADMIN

    def allows(self, operation: Operation) -> bool:
        """True when the entry is enabled and may perform `operation`."""
        return self.enabled and operation in self.operations

    def as_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready values, operations in their canonical order."""
        return {
            "ae_title": self.ae_title,
            "host": self.host,
            "port": self.port,
            "description": self.description,
            "operations": [op for op in ALL_OPERATIONS if op in self.operations],
            "tls": self.tls,
            "enabled": self.enabled,
            "source": self.source,
        }


def validated(entry: RemoteAETitle) -> RemoteAETitle:
    """Return `entry` with its title and host trimmed; raise InvalidAE naming the first bad field."""
    try:
        title = validate_ae_title(entry.ae_title)
    except ValueError as exc:
        raise InvalidAE("ae_title", str(exc)) from None
    host = entry.host.strip()
    if not host or len(host) > 255 or any(c.isspace() or ord(c) < 0x20 for c in host):
        raise InvalidAE("host", "must be a host name or IP address")
    if not 1 <= entry.port <= 65535:
        raise InvalidAE("port", "must be between 1 and 65535")
    unknown = set(entry.operations) - set(ALL_OPERATIONS)
    if unknown:
        raise InvalidAE("operations", f"unknown operation(s) {', '.join(sorted(unknown))}")
    return replace(entry, ae_title=title, host=host)


_FLAGS: dict[Operation, str] = {
    "store": "allow_store",
    "find": "allow_find",
    "move": "allow_move",
    "get": "allow_get",
    "destination": "allow_destination",
}


def _from_row(row: RemoteAE) -> RemoteAETitle:
    operations = frozenset(op for op, column in _FLAGS.items() if getattr(row, column))
    return RemoteAETitle(
        row.ae_title, row.host, row.port, row.description, operations, row.tls, row.enabled, row.source
    )


def _columns(entry: RemoteAETitle) -> dict[str, Any]:
    values: dict[str, Any] = {column: op in entry.operations for op, column in _FLAGS.items()}
    values.update(
        host=entry.host,
        port=entry.port,
        description=entry.description,
        tls=entry.tls,
        enabled=entry.enabled,
        source=entry.source,
        updated_at=func.now(),
    )
    return values


def from_setting(setting: RemoteAESetting) -> RemoteAETitle:
    """The registry entry for one AE declared in the settings."""
    return RemoteAETitle(
        setting.ae_title,
        setting.host,
        setting.port,
        setting.description,
        frozenset(setting.operations),
        setting.tls,
        setting.enabled,
        SOURCE_CONFIG,
    )


@dataclass(frozen=True)
class AppliedSettings:
    """What applying the declared list changed."""

    created: tuple[str, ...]
    updated: tuple[str, ...]
    removed: tuple[str, ...]


class AERegistry:
    """Create, read, update and delete registry entries; every method raises IndexUnavailable when the index is down."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def list(self) -> list[RemoteAETitle]:
        """Every entry, ordered by AE title."""
        try:
            with self.sessions() as session:
                return [_from_row(row) for row in session.scalars(select(RemoteAE).order_by(RemoteAE.ae_title))]
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc

    def find(self, ae_title: str) -> RemoteAETitle | None:
        """The entry for `ae_title` (compared exactly, after trimming), or None."""
        try:
            with self.sessions() as session:
                row = session.scalars(select(RemoteAE).where(RemoteAE.ae_title == ae_title.strip())).one_or_none()
                return _from_row(row) if row is not None else None
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc

    def get(self, ae_title: str) -> RemoteAETitle:
        """The entry for `ae_title`; raises UnknownAE."""
        entry = self.find(ae_title)
        if entry is None:
            raise UnknownAE(f"AE title {ae_title.strip()!r} is not registered")
        return entry

    def add(self, entry: RemoteAETitle) -> RemoteAETitle:
        """Register a new entry; raises InvalidAE or AEAlreadyRegistered."""
        entry = validated(entry)
        try:
            with self.sessions.begin() as session:
                session.add(RemoteAE(ae_title=entry.ae_title, **_columns(entry)))
        except IntegrityError:
            raise AEAlreadyRegistered(f"AE title {entry.ae_title!r} is already registered") from None
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc
        return self.get(entry.ae_title)

    def update(self, ae_title: str, **changes: Any) -> RemoteAETitle:
        """Change some fields of an entry (host, port, description, operations, tls, enabled).

        An entry changed here is no longer managed by the settings. Raises UnknownAE or InvalidAE.
        """
        allowed = {"host", "port", "description", "operations", "tls", "enabled"}
        if unknown := set(changes) - allowed:
            raise InvalidAE(sorted(unknown)[0], "cannot be changed")
        if "operations" in changes:
            changes["operations"] = frozenset(changes["operations"])
        current = self.get(ae_title)
        entry = validated(replace(current, **changes, source=SOURCE_ADMIN))
        try:
            with self.sessions.begin() as session:
                row = session.scalars(select(RemoteAE).where(RemoteAE.ae_title == entry.ae_title)).one_or_none()
                if row is None:
                    raise UnknownAE(f"AE title {entry.ae_title!r} is not registered")
                for name, value in _columns(entry).items():
                    setattr(row, name, value)
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc
        return self.get(entry.ae_title)

    def remove(self, ae_title: str) -> None:
        """Delete an entry; raises UnknownAE."""
        try:
            with self.sessions.begin() as session:
                deleted = session.execute(delete(RemoteAE).where(RemoteAE.ae_title == ae_title.strip())).rowcount  # type: ignore[attr-defined]
        except OperationalError as exc:
            raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc
        if not deleted:
            raise UnknownAE(f"AE title {ae_title.strip()!r} is not registered")

    def apply_settings(self, declared: Iterable[RemoteAESetting]) -> AppliedSettings:
        """Make the registry hold exactly the declared entries among those the settings manage.

        Declared entries are created or overwritten (and become managed by the settings); entries the
        settings created earlier and no longer declare are removed; entries made with the CLI or REST
        and not declared are left alone. Safe to run from several processes at once.
        """
        wanted = {entry.ae_title: from_setting(entry) for entry in declared}
        for attempt in range(3):
            try:
                return self._apply(wanted)
            except IntegrityError:  # another process inserted the same title first: look again
                if attempt == 2:
                    raise
            except OperationalError as exc:
                raise IndexUnavailable(f"index database unavailable: {exc.orig or exc}") from exc
        raise AssertionError("unreachable")

    def _apply(self, wanted: dict[str, RemoteAETitle]) -> AppliedSettings:
        created: list[str] = []
        updated: list[str] = []
        removed: list[str] = []
        with self.sessions.begin() as session:
            rows = {row.ae_title: row for row in session.scalars(select(RemoteAE))}
            for title, entry in wanted.items():
                row = rows.get(title)
                if row is None:
                    session.add(RemoteAE(ae_title=title, **_columns(entry)))
                    created.append(title)
                elif _from_row(row) != entry:
                    for name, value in _columns(entry).items():
                        setattr(row, name, value)
                    updated.append(title)
            for title, row in rows.items():
                if row.source == SOURCE_CONFIG and title not in wanted:
                    session.delete(row)
                    removed.append(title)
        return AppliedSettings(tuple(created), tuple(updated), tuple(removed))
