"""The bus contract: what every implementation (embedded and RabbitMQ) must do alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.bus.base import Incoming, Outgoing, Subscription
from hub.errors import DependencyMissing, InvalidMessage, Unroutable
from hub.store.tables import inbox
from tests.bus.conftest import BusKit
from tests.bus.kit import DELIVERY_LIMIT, Decoder, order_message
from tests.databases import AMQP_URL
from tests.helpers import wait_for


def out(key: str = "crm.order.changed.p0", body: bytes | None = None) -> Outgoing:
    mid = str(uuid.uuid4())
    return Outgoing(mid, key, body or f'{{"n": "{mid}"}}'.encode(), {"x-hub-key": mid[:8]})


class Recorder:
    """A handler that records what it applied and fails the messages it is told to."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.applied: list[str] = []
        self.attempts: dict[str, list[int]] = {}
        self.fail = fail or {}
        self.lock = threading.Lock()

    def __call__(self, batch: Sequence[Incoming]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        with self.lock:
            for m in batch:
                self.attempts.setdefault(m.message_id, []).append(m.attempt)
                error = self.fail.get(m.message_id)
                if error is None:
                    self.applied.append(m.message_id)
                results.append(error)
        return results


def test_published_messages_arrive_once_in_order(kit: BusKit) -> None:
    sub = Subscription(kit.queue(), ("crm.order.*.*",))
    kit.bus.declare(sub)
    messages = [out() for _ in range(120)]
    kit.bus.publish(messages)
    rec = Recorder()
    with kit.consuming(sub, rec):
        wait_for(lambda: len(rec.applied) >= 120, what="all 120 messages")
    assert rec.applied == [m.message_id for m in messages]


def test_each_subscription_gets_its_own_copy(kit: BusKit) -> None:
    a = Subscription(kit.queue("a"), ("crm.#",))
    b = Subscription(kit.queue("b"), ("*.order.changed.*",))
    other = Subscription(kit.queue("c"), ("erp.#",))
    for sub in (a, b, other):
        kit.bus.declare(sub)
    message = out("crm.order.changed.p1")
    kit.bus.publish([message])
    ra, rb, rc = Recorder(), Recorder(), Recorder()
    with kit.consuming(a, ra), kit.consuming(b, rb), kit.consuming(other, rc):
        wait_for(lambda: ra.applied and rb.applied, what="both copies")
    assert ra.applied == rb.applied == [message.message_id]
    assert rc.applied == []


def test_unroutable_publish_is_an_error_naming_the_message(kit: BusKit) -> None:
    sub = Subscription(kit.queue(), ("crm.#",))
    kit.bus.declare(sub)
    good, lost = out("crm.order.changed.p0"), out("nobody.listens.here.p0")
    with pytest.raises(Unroutable) as info:
        kit.bus.publish([good, lost])
    assert info.value.message_ids == (lost.message_id,)
    rec = Recorder()
    with kit.consuming(sub, rec):
        wait_for(lambda: rec.applied == [good.message_id], what="the routable message")


def test_permanent_error_dead_letters_with_reason_and_others_flow(kit: BusKit) -> None:
    sub = Subscription(kit.queue(), ("crm.#",))
    kit.bus.declare(sub)
    messages = [out() for _ in range(10)]
    poison = messages[3]
    rec = Recorder({poison.message_id: InvalidMessage("quantity must be positive")})
    kit.bus.publish(messages)
    with kit.consuming(sub, rec):
        wait_for(lambda: len(rec.applied) == 9, what="the nine good messages")
        wait_for(lambda: any(d.message_id == poison.message_id for d in kit.dead_letters()),
                 what="the poison message in dead letters")
    dead = next(d for d in kit.dead_letters() if d.message_id == poison.message_id)
    assert "quantity must be positive" in dead.reason
    assert dead.error_code == "invalid_message"
    assert dead.queue == sub.queue
    assert dead.body == poison.body
    assert rec.attempts[poison.message_id] == [1], "a permanent error is never retried"


def test_retryable_error_is_retried_with_growing_attempt_then_applied(kit: BusKit) -> None:
    sub = Subscription(kit.queue(), ("crm.#",))
    kit.bus.declare(sub)
    message = out()

    class FlakyOnce(Recorder):
        def __call__(self, batch: Sequence[Incoming]) -> list[BaseException | None]:
            self.fail = (
                {message.message_id: DependencyMissing("customer C1 not synced yet")}
                if not self.attempts.get(message.message_id) else {}
            )
            return super().__call__(batch)

    rec = FlakyOnce()
    kit.bus.publish([message])
    with kit.consuming(sub, rec):
        wait_for(lambda: rec.applied == [message.message_id], what="the retried message")
    assert rec.attempts[message.message_id] == [1, 2]
    assert not [d for d in kit.dead_letters() if d.message_id == message.message_id]


def test_retries_exhausted_go_to_dead_letters(kit: BusKit) -> None:
    sub = Subscription(kit.queue(), ("crm.#",))
    kit.bus.declare(sub)
    message = out()
    rec = Recorder({message.message_id: DependencyMissing("ERP is closing the period")})
    kit.bus.publish([message])
    with kit.consuming(sub, rec):
        wait_for(lambda: any(d.message_id == message.message_id for d in kit.dead_letters()),
                 what="dead letter after retries")
    dead = next(d for d in kit.dead_letters() if d.message_id == message.message_id)
    assert dead.reason.startswith("gave up after 3 attempts")
    assert "ERP is closing the period" in dead.reason
    assert rec.attempts[message.message_id] == [1, 2, 3]


def test_a_handler_that_crashes_on_one_message_does_not_hold_back_the_batch(kit: BusKit) -> None:
    sub = Subscription(kit.queue(), ("crm.#",))
    kit.bus.declare(sub)
    messages = [out() for _ in range(8)]
    poison = messages[5].message_id
    applied: list[str] = []

    def handler(batch: Sequence[Incoming]) -> list[BaseException | None]:
        if any(m.message_id == poison for m in batch):
            raise KeyError("bug in a mapping")
        applied.extend(m.message_id for m in batch)
        return [None] * len(batch)

    kit.bus.publish(messages)
    with kit.consuming(sub, handler, batch_size=8):
        wait_for(lambda: len(applied) == 7, what="the seven good messages")
        wait_for(lambda: any(d.message_id == poison for d in kit.dead_letters()), what="poison")
    dead = next(d for d in kit.dead_letters() if d.message_id == poison)
    assert "KeyError" in dead.reason and "bug in a mapping" in dead.reason


def test_malformed_body_is_dead_lettered_by_decoding(kit: BusKit) -> None:
    sub = Subscription(kit.queue(), ("crm.#",))
    kit.bus.declare(sub)
    bad = out(body=b"\xff\xfe not json at all")
    good = order_message("SO-1")
    decoder = Decoder()

    kit.bus.publish([bad, good])
    with kit.consuming(sub, decoder):
        wait_for(lambda: decoder.keys == ["SO-1"], what="the good message")
        wait_for(lambda: any(d.message_id == bad.message_id for d in kit.dead_letters()),
                 what="the malformed message")
    dead = next(d for d in kit.dead_letters() if d.message_id == bad.message_id)
    assert dead.body == bad.body, "the original bytes are kept for replay"
    assert "canonical model" in dead.reason


def test_send_reaches_only_the_named_queue(kit: BusKit) -> None:
    a = Subscription(kit.queue("a"), ("crm.#",))
    b = Subscription(kit.queue("b"), ("crm.#",))
    kit.bus.declare(a)
    kit.bus.declare(b)
    message = out()
    kit.bus.send(a.queue, message)
    ra, rb = Recorder(), Recorder()
    with kit.consuming(a, ra), kit.consuming(b, rb):
        wait_for(lambda: ra.applied == [message.message_id], what="replayed message")
    assert rb.applied == []
    with pytest.raises(Unroutable):
        kit.bus.send(kit.queue("missing"), out())


def test_queue_depths_count_waiting_messages(kit: BusKit) -> None:
    sub = Subscription(kit.queue(), ("crm.#",))
    kit.bus.declare(sub)
    kit.bus.publish([out() for _ in range(7)])
    wait_for(lambda: kit.bus.queue_depths().get(sub.queue) == 7, what="depth 7")
    kit.bus.ping()


CONSUMER = os.path.join(os.path.dirname(__file__), "consumer_proc.py")


def _consumer(kit: BusKit, queue: str, mode: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, CONSUMER, kit.kind, kit.store.url, kit.exchange, AMQP_URL, queue, mode,
         str(log), str(DELIVERY_LIMIT)],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )


def _effects(kit: BusKit, queue: str) -> int:
    with kit.store.begin() as conn:
        return int(conn.execute(
            select(func.count()).select_from(inbox).where(inbox.c.consumer == queue)
        ).scalar_one())


def test_consumer_killed_before_ack_gets_redelivery_without_second_effect(
    kit: BusKit, tmp_path: Path
) -> None:
    sub = Subscription(kit.queue(), ("crm.#",))
    kit.bus.declare(sub)
    messages = [out() for _ in range(5)]
    kit.bus.publish(messages)
    log = tmp_path / "deliveries.log"
    first = _consumer(kit, sub.queue, "die-after-commit", log)
    assert first.wait(timeout=60) == -signal.SIGKILL, "the consumer killed itself mid-batch"
    assert _effects(kit, sub.queue) == 5, "the effects committed before the kill"
    second = _consumer(kit, sub.queue, "run", log)
    try:
        wait_for(lambda: kit.bus.queue_depths().get(sub.queue) == 0, timeout=30,
                 what="the redelivered messages to be settled")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, "the consumer stops cleanly on SIGTERM"
    assert _effects(kit, sub.queue) == 5, "the redelivery had no second effect"
    deliveries = [line.split() for line in log.read_text().splitlines()]
    ids = [m.message_id for m in messages]
    assert [d[0] for d in deliveries] == ids + ids, "each delivered once, then once again"
    assert {d[2] for d in deliveries[:5]} == {"0"} and {d[2] for d in deliveries[5:]} == {"1"}, \
        "the second delivery is flagged as a redelivery"
