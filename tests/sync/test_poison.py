"""A foreign system publishes junk onto the hub's exchange with a plain pika client: every
poison message lands in dead letters with the reason, and the daemon keeps syncing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pika
import pytest
from sqlalchemy import select

from hub.daemon import Daemon
from hub.demo.people import Line
from hub.demo.reference import init
from hub.http.app import create_app
from hub.parts import build_parts
from hub.runtime import Runtime
from hub.store.tables import journal
from hub.tokens import STAFF, ApiTokens
from tests.bus.kit import delete_test_queues
from tests.certificates.world import served
from tests.databases import AMQP_URL
from tests.helpers import hub_env, wait_for
from tests.sync.conftest import SYNC_PARTS, Stack, stack_settings
from tests.sync.test_order_sync import crm_row, erp_row

pytestmark = pytest.mark.rabbitmq

ORDER = json.dumps({"type": "order.changed", "schema_version": 1,
                    "correlation_key": "SO-FOREIGN-3", "source": "crm"}).encode()
#: (message id, routing key, body, properties): what a careless foreign system sends.
POISON: list[tuple[str | None, str, bytes, dict[str, Any]]] = [
    ("poison-not-json", "crm.order.changed.p0", b"\xff\xfe not json at all",
     {"content_type": "application/octet-stream"}),
    ("poison-xml", "crm.order.changed.p1", b"<order>SO-FOREIGN-2</order>",
     {"content_type": "application/xml"}),
    ("poison-missing-fields", "crm.order.changed.p0", ORDER,
     {"content_type": "application/json",
      "headers": {"x-hub-type": "order.changed", "x-hub-key": "SO-FOREIGN-3"}}),
    ("poison-unknown-type", "crm.order.changed.p1",
     json.dumps({"type": "order.exploded", "schema_version": 1,
                 "correlation_key": "SO-FOREIGN-4", "source": "crm"}).encode(),
     {"content_type": "application/json",
      "headers": {"x-hub-type": "order.exploded", "x-hub-key": "SO-FOREIGN-4"}}),
    (None, "crm.order.changed.p0", b'{"hello": "world"}', {"content_type": "application/json"}),
    ("x" * 200, "crm.order.changed.p1", b"[1, 2, 3]",
     {"content_type": "application/json", "headers": {"x-hub-key": 12345}}),
]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    settings, databases = stack_settings("real", tmp_path)
    init(settings, seed=True)
    runtime = Runtime.open(settings)
    daemon = Daemon(runtime, [p for p in build_parts(runtime) if p.name in SYNC_PARTS])
    daemon.prepare()
    daemon.start()
    try:
        yield Stack("real", settings, runtime, daemon)
    finally:
        daemon.shutdown()
        runtime.close()
        delete_test_queues(settings.queue_prefix)
        delete_test_queues(settings.exchange)
        for db in databases:
            db.drop_all()


def publish_foreign(exchange: str) -> None:
    """What a foreign system does: plain pika, its own idea of properties and headers."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for message_id, key, body, props in POISON:
            # mandatory: the broker refuses (and pika raises) what no queue would get
            channel.basic_publish(exchange, key, body, pika.BasicProperties(
                message_id=message_id, delivery_mode=2, **props), mandatory=True)
    finally:
        connection.close()


def test_poison_from_a_foreign_publisher_is_dead_lettered_and_sync_goes_on(
        stack: Stack) -> None:
    publish_foreign(stack.settings.exchange)
    with stack.runtime.store.begin() as conn:
        _, staff = ApiTokens.create(conn, STAFF, "ops-cleo")
    as_staff = {"Authorization": f"Bearer {staff}"}
    with served(create_app(stack.runtime)) as http:
        letters: list[dict[str, Any]] = []

        def all_dead() -> bool:
            letters[:] = http.get("/api/v1/dead-letters", headers=as_staff).json()
            return len(letters) >= len(POISON)

        wait_for(all_dead, 60, "every poison message in dead letters")
        assert len(letters) == len(POISON), "each once"
        by_id = {d["message_id"]: d for d in letters}
        for d in letters:
            assert d["error_code"] == "invalid_message", d
            assert d["reason"].startswith("message does not match the canonical model"), d
            assert d["queue"].startswith(f"{stack.settings.queue_prefix}erp-applier.p"), d
        assert "JSON" in by_id["poison-not-json"]["reason"]
        assert "JSON" in by_id["poison-xml"]["reason"]
        missing = by_id["poison-missing-fields"]
        assert "order" in missing["reason"] and "Field required" in missing["reason"]
        assert (missing["type"], missing["correlation_key"]) == ("order.changed", "SO-FOREIGN-3")
        assert "order.exploded" in by_id["poison-unknown-type"]["reason"]
        assert by_id["poison-unknown-type"]["type"] == "order.exploded"
        # No message id: one derived from the body, the same for every copy of that body.
        (anonymous,) = [d for d in letters if d["message_id"] not in
                        {m for m, *_ in POISON if m} and not d["message_id"].startswith("x")]
        shown = http.get(f"/api/v1/dead-letters/{anonymous['id']}", headers=as_staff).json()
        assert json.loads(shown["body"]) == {"hello": "world"}
        assert len(anonymous["message_id"]) == 36
        # An over-long id is cut to the column; a header of the wrong type is text.
        long = by_id["x" * 36]
        assert long["correlation_key"] == "12345"
        not_json = http.get(f"/api/v1/dead-letters/{by_id['poison-not-json']['id']}",
                            headers=as_staff).json()
        assert not_json["headers"].get("x-hub-body-encoding") == "base64", "kept byte for byte"

        # The command line shows them too, with why.
        listed = subprocess.run(
            [sys.executable, "-m", "hub", "dead-letters", "list"], capture_output=True,
            text=True, timeout=60, env=hub_env(HUB_DATABASE_URL=stack.settings.database))
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("message does not match the canonical model") == len(POISON)
        assert "SO-FOREIGN-3" in listed.stdout and "SO-FOREIGN-4" in listed.stdout

        # The daemon is still up, on both partitions: a real order syncs both ways.
        assert all(t.is_alive() for t in stack.daemon._threads), "every part still running"
        orders = [stack.sales().submit_order(stack.account(), [Line("ETAC-99", D(q), D("1"))])
                  for q in ("100", "200", "300")]
        for order_id in orders:
            wait_for(lambda o=order_id: crm_row(stack, o).integration_status == "synced", 60,
                     "a normal order synced after the poison")
            assert erp_row(stack, order_id) is not None
    with stack.runtime.store.begin() as conn:
        dead = conn.execute(select(journal.c.message_id).where(
            journal.c.event == "dead_lettered")).scalars().all()
    assert set(dead) >= {"poison-not-json", "poison-xml", "poison-missing-fields",
                         "poison-unknown-type", "x" * 36}, "journaled, the long id cut"
