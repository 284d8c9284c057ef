"""The hub's configuration: one typed object, built once at start and passed in.

Everything comes from ``HUB_*`` environment variables (and an optional ``.env``). With no
configuration at all the hub runs on embedded defaults: SQLite files under ``./var/`` and a bus
that lives in the hub's own store. URLs may carry passwords, so they are ``SecretStr`` and are
only ever shown through :func:`mask_url`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["EMBEDDED_BROKER", "Settings", "mask_url"]

EMBEDDED_BROKER = "embedded://"


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to log or print)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Settings(BaseSettings):
    """Every setting the hub reads; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    var_dir: Path = Field(Path("var"), description="Where embedded defaults keep their files.")
    database_url: SecretStr | None = Field(None, description="The hub's store (SQLAlchemy URL).")
    broker_url: SecretStr | None = Field(None, description="AMQP URL, or embedded:// (default).")
    crm_url: SecretStr | None = Field(None, description="CRM database (SQLAlchemy URL).")
    erp_url: SecretStr | None = Field(None, description="ERP database (SQLAlchemy URL).")
    lims_url: SecretStr | None = Field(None, description="LIMS database (SQLAlchemy URL).")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    poll_interval: float = Field(1.0, gt=0, description="Seconds between polls of a source.")
    public_url: str | None = Field(
        None, description="Base of public links (certificate verification); default the HTTP "
        "service's own http://{http_host}:{http_port}.")
    rate_limit: int = Field(
        120, ge=0, description="API requests per token (verify pages: per client) per minute; "
        "0 turns the limit off.")

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: readable lines on a terminal, JSON lines otherwise."
    )

    exchange: str = Field("hub.events", description="Topic exchange every message goes through.")
    queue_prefix: str = Field(
        "hub.", description="Prefix of every consumer queue (several hubs can share a broker)."
    )
    partitions: int = Field(4, ge=1, le=64, description="Routing partitions per message type.")
    prefetch: int = Field(200, ge=1, description="Unacked messages a consumer may hold.")
    batch_size: int = Field(100, ge=1, description="Messages handled in one transaction.")
    publish_batch: int = Field(
        500, ge=1, description="Outbox messages published per round of broker confirms."
    )
    publish_timeout: float = Field(10.0, gt=0, description="Seconds to wait for confirms.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a connection.")
    heartbeat: int = Field(20, ge=0, description="AMQP heartbeat in seconds (0 disables).")
    retry_delays: Annotated[tuple[float, ...], NoDecode] = Field(
        (1.0, 5.0, 30.0, 120.0, 600.0),
        description="Back-off before each retry of a retryable failure; then dead letters.",
    )
    delivery_limit: int = Field(
        10, ge=1, description="Deliveries without an ack before the broker dead-letters a message."
    )
    lease_seconds: float = Field(60.0, gt=0, description="Embedded bus: redelivery after a crash.")
    retention_days: int = Field(30, ge=1, description="How long journal and inbox rows are kept.")
    shutdown_grace: float = Field(15.0, gt=0, description="Seconds parts get to stop cleanly.")

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(v) for v in value.split(",") if v.strip())
        return value

    # -- resolved values -------------------------------------------------------------------

    def _default_sqlite(self, name: str) -> str:
        return f"sqlite:///{(self.var_dir / f'{name}.db').resolve()}"

    @property
    def database(self) -> str:
        """The hub store's URL, with the embedded default filled in."""
        return self._secret(self.database_url) or self._default_sqlite("hub")

    @property
    def broker(self) -> str:
        """The bus URL, ``embedded://`` when none is configured."""
        return self._secret(self.broker_url) or EMBEDDED_BROKER

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker.startswith("embedded:")

    @property
    def public_base(self) -> str:
        """The base of public links, without a trailing slash."""
        configured = (self.public_url or "").strip().rstrip("/")
        return configured or f"http://{self.http_host}:{self.http_port}"

    def system_url(self, system: Literal["crm", "erp", "lims"]) -> str:
        """The URL of one reference system, with the embedded default filled in."""
        configured = self._secret(getattr(self, f"{system}_url"))
        return configured or self._default_sqlite(system)

    def system_configured(self, system: Literal["crm", "erp", "lims"]) -> bool:
        """True when the user named this system, so the hub must never create or seed it."""
        return self._secret(getattr(self, f"{system}_url")) is not None

    def describe(self) -> dict[str, object]:
        """The effective settings with every secret masked, for logs and ``status``."""
        return {
            "database": mask_url(self.database),
            "broker": mask_url(self.broker),
            "crm": mask_url(self.system_url("crm")),
            "erp": mask_url(self.system_url("erp")),
            "lims": mask_url(self.system_url("lims")),
            "http": f"{self.http_host}:{self.http_port}",
            "poll_interval": self.poll_interval,
        }

    @staticmethod
    def _secret(value: SecretStr | None) -> str | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        return text or None
