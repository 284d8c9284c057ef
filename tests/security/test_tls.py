"""TLS to the broker (``amqps://``) and to the databases, without a TLS-enabled server.

The broker side is a TLS listener on loopback with certificates made here by ``openssl``:
the hub must verify it against the configured CA, check its host name, present its own
client certificate, and then speak AMQP inside the tunnel. The databases on this machine
run without TLS, so a URL that requires TLS must fail to connect: proof that the option
reaches the driver (and that the error shows no password).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hub.bus import open_bus
from hub.errors import BrokerUnavailable, DatabaseUnavailable, HubError, db_errors
from hub.settings import Settings
from hub.store.db import Store
from hub.store.engine import make_engine
from tests.databases import MARIADB_URL, PG_URL

PASSWORD = "Tls-S3cret-pw"
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def _cert(tmp: Path, name: str, subject_alt: str) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName={subject_alt}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass
class Seen:
    port: int = 0
    server_names: list[str | None] = field(default_factory=list)
    client_subjects: list[str] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def tls_listener(cert: Path, key: Path, client_ca: Path) -> Iterator[Seen]:
    """A TLS server on loopback that wants a client certificate, records what each client
    sent inside the tunnel, and hangs up (so the hub's connection attempt fails after it)."""
    seen = Seen()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_ca)
    context.sni_callback = lambda _sock, name, _ctx: seen.server_names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    seen.port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with context.wrap_socket(raw, server_side=True) as tunnel:
                    peer = tunnel.getpeercert() or {}
                    seen.client_subjects.append(str(dict(x[0] for x in peer.get("subject", ()))))
                    seen.received.append(tunnel.recv(8))
            except (ssl.SSLError, OSError) as exc:
                seen.errors.append(str(exc))
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("certs")
    return {"broker": _cert(tmp, "localhost", "DNS:localhost"),
            "client": _cert(tmp, "hub-client", "DNS:hub-client"),
            "other": _cert(tmp, "other-ca", "DNS:localhost")}


def _ping(settings: Settings, tmp_path: Path) -> BrokerUnavailable:
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    bus = open_bus(settings, store)
    try:
        with pytest.raises(BrokerUnavailable) as failed:
            bus.ping()
    finally:
        bus.close()
        store.dispose()
    assert PASSWORD not in str(failed.value) and PASSWORD not in repr(bus)
    return failed.value


def _settings(host: str, port: int, ca: Path, client: tuple[Path, Path]) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, broker_url=f"amqps://hub:{PASSWORD}@{host}:{port}/%2F",
        broker_ca_file=ca, broker_cert_file=client[0], broker_key_file=client[1],
        connect_timeout=3)


def test_amqps_verifies_the_broker_and_presents_the_client_certificate(
    certs: dict[str, tuple[Path, Path]], tmp_path: Path,
) -> None:
    broker, client = certs["broker"], certs["client"]
    with tls_listener(*broker, client_ca=client[0]) as seen:
        _ping(_settings("localhost", seen.port, broker[0], client), tmp_path)
    # The handshake succeeded: the hub named the host, showed its certificate, and then
    # sent the AMQP protocol header inside the tunnel.
    assert seen.server_names == ["localhost"]
    assert seen.client_subjects == ["{'commonName': 'hub-client'}"]
    assert seen.received == [AMQP_HEADER]


@pytest.mark.parametrize("case", ["unknown CA", "wrong host name", "no client certificate"])
def test_amqps_refuses_a_broker_it_cannot_trust(
    certs: dict[str, tuple[Path, Path]], tmp_path: Path, case: str,
) -> None:
    broker, client = certs["broker"], certs["client"]
    with tls_listener(*broker, client_ca=client[0]) as seen:
        if case == "unknown CA":
            settings = _settings("localhost", seen.port, certs["other"][0], client)
        elif case == "wrong host name":  # the certificate names localhost, not 127.0.0.1
            settings = _settings("127.0.0.1", seen.port, broker[0], client)
        else:
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None, broker_url=f"amqps://hub:{PASSWORD}@localhost:{seen.port}/",
                broker_ca_file=broker[0], connect_timeout=3)
        failed = _ping(settings, tmp_path)
    assert seen.received == [], "nothing may be sent to a broker that is not trusted"
    if case != "no client certificate":
        assert "CERTIFICATE_VERIFY_FAILED" in str(failed) or "certificate" in str(failed), failed


def test_tls_settings_need_amqps_and_never_show_the_password() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, broker_url=f"amqp://hub:{PASSWORD}@rabbit/",  # type: ignore[call-arg]
                 broker_ca_file=Path("/etc/ssl/ca.pem"))
    assert "amqps://" in str(refused.value) and PASSWORD not in str(refused.value)
    plain = Settings(_env_file=None, broker_url="amqp://rabbit/")  # type: ignore[call-arg]
    assert plain.broker_tls() is None
    # amqps:// without files: the system's CAs, and the host name is still checked.
    bare = Settings(_env_file=None, broker_url="amqps://rabbit.example/")  # type: ignore[call-arg]
    assert bare.broker_tls() == {"cert_reqs": ssl.CERT_REQUIRED,
                                 "server_hostname": "rabbit.example"}


def test_postgresql_tls_options_in_the_url_reach_the_driver() -> None:
    base = make_url(PG_URL).set(password=PASSWORD)
    plain = make_engine(base.render_as_string(hide_password=False))
    try:
        with plain.connect() as conn:  # this server takes the password or trusts
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        plain.dispose()
    tls = base.update_query_dict({"sslmode": "require"}).render_as_string(hide_password=False)
    engine = make_engine(tls, connect_timeout=3)
    try:
        with pytest.raises(DatabaseUnavailable) as failed, db_errors("hub store"):
            engine.connect().close()
    finally:
        engine.dispose()
    assert "SSL" in str(failed.value) and PASSWORD not in str(failed.value)
    full = base.update_query_dict({"sslmode": "verify-full", "sslrootcert": "/etc/hub/ca.pem",
                                   "sslcert": "/etc/hub/c.pem", "sslkey": "/etc/hub/c.key"})
    _, kwargs = make_engine(full.render_as_string(hide_password=False)).dialect \
        .create_connect_args(full)
    assert kwargs["sslmode"] == "verify-full" and kwargs["sslrootcert"] == "/etc/hub/ca.pem"


def test_mariadb_odbc_tls_options_in_the_url_reach_the_driver() -> None:
    base = make_url(MARIADB_URL)
    # SSLVERIFY=1 is what makes Connector/ODBC 3.1 insist on TLS: FORCETLS=1 or SSLCA alone
    # connect in clear text to a server without TLS (see docs/security.md).
    forced = base.update_query_dict({"SSLVERIFY": "1"}).render_as_string(hide_password=False)
    engine = make_engine(forced, connect_timeout=3)
    try:
        with pytest.raises(HubError) as failed, db_errors("erp"):
            engine.connect().close()
    finally:
        engine.dispose()
    assert "TLS" in str(failed.value) or "SSL" in str(failed.value), failed.value
    verified = base.update_query_dict({"SSLVERIFY": "1", "SSLCA": "/etc/hub/ca.pem",
                                       "SSLCERT": "/etc/hub/c.pem", "SSLKEY": "/etc/hub/c.key"})
    (connection_string,), _ = make_engine(verified.render_as_string(hide_password=False)) \
        .dialect.create_connect_args(verified)
    for option in ("SSLVERIFY=1", "SSLCA=/etc/hub/ca.pem", "SSLCERT=/etc/hub/c.pem",
                   "SSLKEY=/etc/hub/c.key"):
        assert option in connection_string, connection_string
