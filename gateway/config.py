"""Settings from GATEWAY_* environment variables and an optional TOML file: the only reader of the environment."""

from __future__ import annotations

import contextvars
import os
import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.errors import ConfigError

_TOML_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("gateway_toml_file", default=None)

# PS3.5 6.2 AE VR: 1-16 characters of the default repertoire, no backslash, no control characters.
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


def validate_ae_title(value: str) -> str:
    """Return the AE title trimmed, or raise ValueError saying why it is not a valid AE title."""
    title = value.strip()
    if not title:
        raise ValueError("AE title must not be empty")
    if _AE_RE.match(title) is None:
        raise ValueError("AE title must be 1-16 printable characters without backslash")
    return title


# What a registered remote AE may do (docs: README "AE titles"): send us instances (C-STORE), query (C-FIND),
# retrieve (C-MOVE / C-GET as the requester), and receive the sub-operations of a C-MOVE (as its destination).
Operation = Literal["store", "find", "move", "get", "destination"]
ALL_OPERATIONS: tuple[Operation, ...] = ("store", "find", "move", "get", "destination")


class RemoteAESetting(BaseModel):
    """A remote AE declared in the settings (TOML `[[remote_aes]]`), applied to the AE registry at start-up."""

    model_config = ConfigDict(extra="forbid")

    ae_title: str
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    description: str = ""
    operations: list[Operation] = Field(default_factory=lambda: list(ALL_OPERATIONS))
    tls: bool = False
    enabled: bool = True

    @field_validator("ae_title")
    @classmethod
    def _check_ae_title(cls, value: str) -> str:
        return validate_ae_title(value)


class Settings(BaseSettings):
    """Everything the gateway can be configured with; defaults are the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="forbid", validate_default=True)

    data_dir: Path = Path("./gateway-data")
    ae_title: str = "DICOMGW"
    ae_aliases: list[str] = Field(default_factory=list)
    dicom_host: str = "0.0.0.0"
    dicom_port: int = Field(default=11112, ge=1, le=65535)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    public_url: str = ""
    index_url: str = ""
    storage_url: str = ""
    storage_prefix: str = ""
    # fsync every object before answering success (the durable default); false trades that for speed.
    storage_sync: bool = True
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    broker_url: str = ""
    workers: int = Field(default=2, ge=1, le=64)
    # CPU priority (nice) of the workers: indexing is background work, so on a busy machine the SCP
    # answering modalities and the API answering viewers go first, and indexing takes the CPU left.
    worker_nice: int = Field(default=10, ge=0, le=19)
    # Two by default: parallel associations then run on two cores instead of sharing one GIL.
    scp_processes: int = Field(default=2, ge=1, le=64)
    # The longest (seconds) a received instance waits for indexing while its SCP process keeps receiving
    # (index_journal.py): once the process has been idle for 50 ms (a push ended, a lone instance) its
    # instances go to the workers at once. Longer: indexing stays off the cores a push needs, in fewer,
    # larger index transactions; shorter: searchable sooner during a long push.
    index_batch_interval: float = Field(default=2.0, ge=0.0, le=10.0)
    # Storage-only associations go to the gateway's own C-STORE receiver (gateway/dimse/fast_store.py);
    # false sends every association through pynetdicom.
    scp_fast_store: bool = True
    # HTTP API processes sharing the HTTP port under `serve` (uvicorn workers).
    api_processes: int = Field(default=2, ge=1, le=64)
    max_pdu: int = Field(default=131072, ge=0)
    max_associations: int = Field(default=64, ge=1)
    stow_max_bytes: int = Field(default=4 << 30, ge=1)
    dimse_timeout: float = Field(default=60.0, gt=0)
    network_timeout: float = Field(default=60.0, gt=0)
    task_max_retries: int = Field(default=12, ge=0)
    task_retry_backoff_max: int = Field(default=300, ge=1)
    broker_visibility_timeout: int = Field(default=900, ge=1)
    broker_timeout: float = Field(default=5.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"
    association_policy: Literal["open", "registered"] = "open"
    association_check_host: bool = False
    remote_aes: list[RemoteAESetting] = Field(default_factory=list)
    tls_port: int = Field(default=0, ge=0, le=65535)
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    tls_ca_certificates: Path | None = None
    tls_verify_client: bool = False
    fhir_version: Literal["R4", "R5"] = "R4"
    fhir_debounce_seconds: float = Field(default=10.0, ge=0, le=3600)
    fhir_timezone: str = ""
    fhir_push_url: str = ""
    fhir_push_token: SecretStr | None = None
    fhir_push_timeout: float = Field(default=10.0, gt=0)
    fhir_push_retry_seconds: int = Field(default=86400, ge=0)
    # Origins of browser apps (e.g. an OHIF viewer on its own host) allowed to call the API.
    cors_origins: list[str] = Field(default_factory=list)
    # DELETE on /dicomweb studies, series and instances; off unless an admin turns it on.
    allow_delete: bool = False

    @field_validator("ae_title")
    @classmethod
    def _check_ae_title(cls, value: str) -> str:
        return validate_ae_title(value)

    @field_validator("ae_aliases")
    @classmethod
    def _check_aliases(cls, value: list[str]) -> list[str]:
        return [validate_ae_title(v) for v in value]

    @field_validator("index_url")
    @classmethod
    def _check_index_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str) -> str:
        if value and not value.startswith(("file://", "s3://")):
            raise ValueError("must start with file:// or s3://")
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "redis+socket://", "sentinel://")):
            raise ValueError("must be a redis://, rediss://, redis+socket:// or sentinel:// URL")
        return value

    @field_validator("remote_aes")
    @classmethod
    def _check_remote_aes(cls, value: list[RemoteAESetting]) -> list[RemoteAESetting]:
        titles = [entry.ae_title for entry in value]
        duplicates = sorted({title for title in titles if titles.count(title) > 1})
        if duplicates:
            raise ValueError(f"AE title declared more than once: {', '.join(duplicates)}")
        return value

    @field_validator("tls_port")
    @classmethod
    def _check_tls_port(cls, value: int, info: ValidationInfo) -> int:
        if value and value == info.data.get("dicom_port"):
            raise ValueError("must differ from dicom_port (DICOM TLS listens on a port of its own)")
        return value

    @field_validator("tls_private_key")
    @classmethod
    def _check_tls_files(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if info.data.get("tls_port") and (value is None or info.data.get("tls_certificate") is None):
            raise ValueError("tls_port is set: give both tls_certificate and tls_private_key")
        return value

    @field_validator("tls_verify_client")
    @classmethod
    def _check_tls_verify(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("tls_ca_certificates") is None:
            raise ValueError("verifying client certificates needs tls_ca_certificates")
        return value

    @field_validator("fhir_timezone")
    @classmethod
    def _check_fhir_timezone(cls, value: str) -> str:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("must be an IANA time zone name such as Europe/Berlin") from None
        return value

    @field_validator("fhir_push_url")
    @classmethod
    def _check_fhir_push_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be the http:// or https:// base URL of a FHIR server")
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _TOML_FILE.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def resolved_index_url(self) -> str:
        """The index database URL; the SQLite file in the data dir when none is set."""
        return self.index_url or f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        """The object store URL; the `objects` folder in the data dir when none is set."""
        return self.storage_url or (self.data_dir / "objects").resolve().as_uri()

    @property
    def all_ae_titles(self) -> list[str]:
        """Our AE title followed by its aliases: the called AE titles we answer to."""
        return [self.ae_title, *self.ae_aliases]


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ".".join(str(part) for part in first["loc"]) or "settings"
    env_name = f"GATEWAY_{loc.upper()}" if first["type"] != "extra_forbidden" else loc
    given = first.get("input")
    shown = "" if isinstance(given, dict) or given is None else f" (got {str(given)[:60]!r})"
    return f"invalid setting {env_name}: {first['msg']}{shown}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from overrides, GATEWAY_* variables and the TOML file; raise ConfigError in one line."""
    if config_file is None and (named := os.environ.get("GATEWAY_CONFIG")):
        config_file = Path(named)
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"invalid setting --config: {config_file} is not a readable file")
    token = _TOML_FILE.set(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except (OSError, ValueError) as exc:  # malformed TOML
        raise ConfigError(f"invalid configuration file {config_file}: {exc}") from None
    finally:
        _TOML_FILE.reset(token)
