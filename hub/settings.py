"""The hub's configuration: one typed object, built once at start and passed in.

Everything comes from ``HUB_*`` environment variables (and an optional ``.env``). With no
configuration at all the hub runs on embedded defaults: SQLite files under ``./var/`` and a bus
that lives in the hub's own store. URLs may carry passwords, so they are ``SecretStr`` and are
only ever shown through :func:`mask_url`.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote_plus, unquote_plus, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["EMBEDDED_BROKER", "Settings", "mask_url"]

EMBEDDED_BROKER = "embedded://"


#: ``user:password@`` after the scheme. The password runs to the first ``@``, as SQLAlchemy
#: reads it, so one with an unencoded ``/``, ``?`` or ``#`` is masked in full too.
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*://[^:/@?#]*):[^@]*@")
#: Query parameters that carry a password (libpq's ``password``, ODBC's ``PWD`` ...).
_SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "pass", "sslpassword"})
#: ``PWD=...`` / ``Password=...`` inside an ODBC connection string (``odbc_connect``).
_ODBC_SECRET = re.compile(r"(?i)((?:^|;)\s*(?:pwd|password)\s*=\s*)(\{[^}]*\}?|[^;]*)")


def mask_url(url: str) -> str:
    """Return ``url`` with every password replaced by ``***`` (safe to log or print): the
    one after the user name, and any in query parameters or an ODBC connection string."""
    masked = _USERINFO.sub(r"\g<head>:***@", url, count=1)
    base, sep, query = masked.partition("?")
    if not sep:
        return masked
    fragment = ""
    if "#" in query:
        query, fragment = query.split("#", 1)
        fragment = "#" + fragment
    pairs = []
    for pair in query.split("&"):
        key, eq, value = pair.partition("=")
        name = unquote_plus(key).strip().lower()
        if eq and name in _SECRET_PARAMS:
            value = "***"
        elif eq and name == "odbc_connect":
            value = quote_plus(_ODBC_SECRET.sub(r"\g<1>***", unquote_plus(value)), safe="*")
        pairs.append(key + eq + value)
    return base + sep + "&".join(pairs) + fragment


class Settings(BaseSettings):
    """Every setting the hub reads; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    var_dir: Path = Field(Path("var"), description="Where embedded defaults keep their files.")
    database_url: SecretStr | None = Field(None, description="The hub's store (SQLAlchemy URL).")
    broker_url: SecretStr | None = Field(None, description="AMQP URL, or embedded:// (default).")
    broker_ca_file: Path | None = Field(
        None, description="amqps://: the CA bundle (PEM) that signed the broker's certificate; "
        "default the system's CAs. The broker's host name is always checked.")
    broker_cert_file: Path | None = Field(
        None, description="amqps://: this hub's client certificate (PEM), for brokers that "
        "require one (mutual TLS; with HUB_BROKER_KEY_FILE).")
    broker_key_file: Path | None = Field(
        None, description="amqps://: the client certificate's private key (PEM, unencrypted).")
    crm_url: SecretStr | None = Field(None, description="CRM database (SQLAlchemy URL).")
    erp_url: SecretStr | None = Field(None, description="ERP database (SQLAlchemy URL).")
    lims_url: SecretStr | None = Field(None, description="LIMS database (SQLAlchemy URL).")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    poll_interval: float = Field(1.0, gt=0, description="Seconds between polls of a source.")
    watermark_overlap: float = Field(
        10.0, gt=0, description="Seconds a poll reads back, for changes committed late (in a "
        "backlog: every half overlap of progress; once caught up: every half overlap of time, "
        "reaching back half an overlap more, with polls between reading back 2 s).")
    watermark_sweep: float = Field(
        300.0, ge=0, description="Seconds polls read back once a minute (keys only, a few "
        "pages per poll), for changes committed later than the overlap (a writer whose "
        "transaction waited on locks); 0: off.")
    public_url: str | None = Field(
        None, description="Base of public links (certificate verification); default the HTTP "
        "service's own http://{http_host}:{http_port}.")
    rate_limit: int = Field(
        120, ge=0, description="API requests per token (verify pages: per client) per minute; "
        "0 turns the limit off.")

    session_secret: SecretStr | None = Field(
        None, description="Key that signs the operations dashboard's session cookies; by "
        "default a random key kept in {var_dir}/ops-session.key (every HTTP process that "
        "shares sessions must share the key).")

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
    outage_hold: float = Field(
        600.0, ge=0, description="Seconds an applier holds a batch while a system it needs does "
        "not answer, before the batch takes the retry path (keep it below RabbitMQ's "
        "consumer_timeout, 30 min by default).",
    )
    delivery_limit: int = Field(
        10, ge=1, description="Deliveries without an ack before the broker dead-letters a message."
    )
    lease_seconds: float = Field(60.0, gt=0, description="Embedded bus: redelivery after a crash.")
    retention_days: int = Field(30, ge=1, description="How long journal and inbox rows are kept.")
    shutdown_grace: float = Field(15.0, gt=0, description="Seconds parts get to stop cleanly.")
    apart: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Parts that run in processes of their own, forked by the daemon at "
        "start (comma-separated names, e.g. erp-applier): one Python process uses one core.")
    certificate_renders_per_process: int = Field(
        200, ge=0, description="Certificates the daemon renders in one worker process before "
        "it replaces it (Pango keeps memory per render); 0 renders in the daemon's own process.")

    @field_validator("broker_ca_file", "broker_cert_file", "broker_key_file")
    @classmethod
    def _tls_needs_amqps(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # A field validator, not a model one: a model's error would show every input, the
        # broker URL's password too.
        broker = info.data.get("broker_url")
        url = broker.get_secret_value().strip() if isinstance(broker, SecretStr) else ""
        if value is not None and not url.startswith("amqps://"):
            raise ValueError(f"HUB_{(info.field_name or '').upper()} needs an amqps:// "
                             "HUB_BROKER_URL")
        return value

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(v) for v in value.split(",") if v.strip())
        return value

    @field_validator("apart", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
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

    def broker_tls(self) -> dict[str, Any] | None:
        """py-amqp's TLS options for an ``amqps://`` broker (None for anything else): the
        broker's certificate must chain to the CA file (or a system CA) and name its host."""
        if not self.broker.startswith("amqps://"):
            return None
        options: dict[str, Any] = {
            "cert_reqs": ssl.CERT_REQUIRED,
            # Setting the server name also turns on py-amqp's host name check.
            "server_hostname": urlsplit(self.broker).hostname or None,
        }
        if self.broker_ca_file is not None:
            options["ca_certs"] = str(self.broker_ca_file)
        if self.broker_cert_file is not None:
            options["certfile"] = str(self.broker_cert_file)
            options["keyfile"] = str(self.broker_key_file or self.broker_cert_file)
        return options

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
