"""A served hub (certificate and operations APIs) with a delivered batch, a dead letter and
one token of each kind, for the security tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hub.http.app import create_app
from hub.store.deadletters import DeadLetters, NewDeadLetter
from hub.tokens import CUSTOMER, STAFF, ApiTokens, Kind
from tests.certificates.world import HUAYI, RHEINLAND, STACKS, World, served, world

#: Delivered to HUAYI only; RHEINLAND is the "wrong customer".
BATCH = "B2611-0001"
#: A batch number that exists nowhere.
MISSING = "B2611-9999"


@dataclass
class Site:
    """A world, its HTTP client, and the authorization headers of each kind of caller."""

    w: World
    client: httpx.Client
    headers: dict[str, dict[str, str]]
    tokens: dict[str, str]
    letter_id: int


def make_token(w: World, kind: Kind, subject: str) -> str:
    with w.runtime.store.begin() as conn:
        _, token = ApiTokens.create(conn, kind, subject)
    return token


def add_dead_letter(w: World, correlation_key: str = "SO-2026-000001") -> int:
    with w.runtime.store.begin() as conn:
        DeadLetters.add(conn, [NewDeadLetter(
            message_id="5d7c1b9e-0000-4000-8000-000000000001", queue="hub.erp-applier",
            routing_key="crm.order.changed.p0", body=b'{"type": "order.changed"}',
            headers={}, reason="unknown item XYZ", error_code="unknown_reference",
            attempts=1, type="order.changed", correlation_key=correlation_key)])
        (letter,) = DeadLetters.list(conn, limit=1)
    return letter.id


@contextmanager
def site_on(stack: tuple[str, str], tmp_path: Path, **settings: object) -> Iterator[Site]:
    """A :class:`Site` on ``stack`` (store kind, systems kind)."""
    with world(stack, tmp_path, **settings) as w:
        from hub.demo import create_schemas

        create_schemas({"crm": w.runtime.settings.system_url("crm")})  # an empty CRM
        w.deliver(HUAYI, BATCH)
        tokens = {
            "customer": make_token(w, CUSTOMER, HUAYI),
            "wrong customer": make_token(w, CUSTOMER, RHEINLAND),
            "staff": make_token(w, STAFF, "li.wang"),
        }
        headers = {"no token": {}, **{k: {"Authorization": f"Bearer {t}"}
                                      for k, t in tokens.items()}}
        letter_id = add_dead_letter(w)
        with served(create_app(w.runtime)) as client:
            yield Site(w, client, headers, tokens, letter_id)


@pytest.fixture(params=STACKS)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    with site_on(request.param, tmp_path) as made:
        yield made
