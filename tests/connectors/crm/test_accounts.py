"""CRM accounts: read as parties, found by number or ERP code, created once, polled by page."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select

from connectors.crm import CrmAccounts
from connectors.crm.schema import crm_account
from hub.demo.seed_data import CUSTOMERS
from hub.errors import InvalidMessage, MappingError, UnknownReference
from hub.model.records import Party
from tests.connectors.crm.kit import HUAYI, SEEDED_AT, T0, insert_account


def _row(conn: Connection, account_id: str) -> Any:
    return conn.execute(select(crm_account).where(crm_account.c.account_id == account_id)).one()


def test_a_seeded_account_reads_as_a_party(crm: Engine) -> None:
    with crm.connect() as conn:
        party = CrmAccounts().read(conn, HUAYI.account_id)
        missing = CrmAccounts().read(conn, "nobody")
    assert party == Party(number="C00042", name="上海华谊精细化工有限公司", country="CN",
                          email="caigou@huayi-fine.example.cn", crm_id=HUAYI.account_id,
                          erp_code="C00042")
    assert missing is None


def test_find_by_number_and_by_erp_code(crm: Engine) -> None:
    with crm.begin() as conn:
        coded = insert_account(conn, "C90001", code="K-77")
        plain = insert_account(conn, "C90002")
    with crm.connect() as conn:
        accounts = CrmAccounts()
        assert accounts.find_by_number(conn, "C90001") == coded
        assert accounts.find_by_number(conn, "K-77") is None
        assert accounts.find_by_erp_code(conn, "K-77") == coded
        assert accounts.find_by_erp_code(conn, "C90002") == plain, "number is the default code"
        assert accounts.find_by_erp_code(conn, "C00043") == CUSTOMERS[1].account_id
        assert accounts.find_by_erp_code(conn, "C99999") is None


def test_an_erp_code_on_two_accounts_is_an_error_not_a_guess(crm: Engine) -> None:
    with crm.begin() as conn:
        insert_account(conn, "C90001", code="K-77")
        insert_account(conn, "C90002", code="K-77")
    with crm.connect() as conn, pytest.raises(MappingError, match="K-77 is linked to more"):
        CrmAccounts().find_by_erp_code(conn, "K-77")


def test_create_from_an_erp_partner_once(crm: Engine) -> None:
    party = Party(number="C77001", name="Kanto Resins 株式会社", country="JP",
                  email="buy@kanto.example.jp", erp_code="C77001", crm_id="ignored")
    with crm.begin() as conn:
        account_id = CrmAccounts().create(conn, party)
    with crm.begin() as conn:
        again = CrmAccounts().create(conn, party.model_copy(update={"name": "Other"}))
        existing = CrmAccounts().create(conn, Party(number="C00042", name="x"))
    with crm.connect() as conn:
        row = _row(conn, account_id)
        total = conn.execute(select(func.count()).select_from(crm_account)).scalar_one()
    assert again == account_id and existing == HUAYI.account_id
    assert len(account_id) == 36 and account_id != "ignored"
    assert (row.account_number, row.name, row.country, row.email, row.erp_customer_code) == (
        "C77001", "Kanto Resins 株式会社", "JP", "buy@kanto.example.jp", "C77001")
    assert row.modified_by == "hub" and row.modified_at > SEEDED_AT
    assert total == len(CUSTOMERS) + 1


def test_set_erp_code(crm: Engine) -> None:
    with crm.begin() as conn:
        account_id = insert_account(conn, "C90001")
    with crm.begin() as conn:
        CrmAccounts().set_erp_code(conn, account_id, "K-90001")
    with crm.connect() as conn:
        row = _row(conn, account_id)
        assert CrmAccounts().find_by_erp_code(conn, "K-90001") == account_id
        with pytest.raises(UnknownReference, match="no customer account nobody"):
            CrmAccounts().set_erp_code(conn, "nobody", "K-1")
    assert (row.erp_customer_code, row.modified_by) == ("K-90001", "hub")
    assert row.modified_at > T0


def test_changes_page_through_accounts_changed_in_the_same_instant(crm: Engine) -> None:
    accounts = CrmAccounts()
    seeded = sorted(c.account_id for c in CUSTOMERS)
    with crm.begin() as conn:
        later = insert_account(conn, "C90001", modified_at=T0)
    keys: list[str] = []
    after = None
    with crm.connect() as conn:
        while True:
            page = accounts.changes(conn, None, after, 4)
            keys.extend(ch.key for ch in page)
            if len(page) < 4:
                break
            after = (page[-1].changed_at, page[-1].key)
        everything = accounts.changes(conn, None, None, 100)
        recent = accounts.changes(conn, SEEDED_AT + dt.timedelta(microseconds=1), None, 100)
    assert keys == [*seeded, later]
    assert [ch.key for ch in recent] == [later]
    first = everything[0]
    assert first.version == "2026-03-01T08:00:00.123456" and first.changed_at == SEEDED_AT
    assert isinstance(first.row, Party) and first.row.crm_id == first.key


def test_an_invalid_account_reads_as_a_readable_problem_in_place(crm: Engine) -> None:
    with crm.begin() as conn:
        bad = insert_account(conn, "C90001", country="de", modified_at=T0)
        good = insert_account(conn, "C90002", modified_at=T0 + dt.timedelta(seconds=1))
    with crm.connect() as conn:
        page = CrmAccounts().changes(conn, T0, None, 10)
        with pytest.raises(InvalidMessage) as caught:
            CrmAccounts().read(conn, bad)
    assert [ch.key for ch in page] == [bad, good]
    assert isinstance(page[0].row, InvalidMessage) and isinstance(page[1].row, Party)
    assert str(caught.value) == ("customer C90001: country must be a two-letter country code "
                                 "such as DE (it is 'de')")
