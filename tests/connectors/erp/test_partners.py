"""ERP customers (OCRD) as canonical parties: upsert, read, and the change stream."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select, update

from connectors.erp import ErpPartners
from connectors.erp.schema import ocrd
from hub.demo.seed_data import CUSTOMERS
from hub.errors import ForbiddenTransition, MappingError
from hub.model.records import Party
from hub.store.types import utcnow
from tests.connectors.erp.kit import HUAYI, SEEDED_AT, T0


def _row(erp: Engine, code: str) -> dict[str, object]:
    with erp.connect() as conn:
        return dict(conn.execute(select(ocrd).where(ocrd.c.CardCode == code)).one()._mapping)


def test_a_new_customer_is_created_and_read_back(erp: Engine) -> None:
    partners = ErpPartners()
    party = Party(number="C00100", erp_code="C00100", name="杭州新材料科技有限公司",
                  country="CN", email="buy@hz-xincai.example.cn", crm_id="acc-100")
    before = utcnow()
    with erp.begin() as conn:
        assert partners.upsert(conn, party) == "C00100"
        # erp_code wins over number when they differ
        assert partners.upsert(conn, party.model_copy(
            update={"number": "C00101", "erp_code": "K-101"})) == "K-101"
    with erp.connect() as conn:
        got = partners.read(conn, "C00100")
        assert partners.read(conn, "C00101") is None
        assert partners.read(conn, "c00100") is None  # exact codes, whatever the collation
    assert got == party
    row = _row(erp, "C00100")
    assert row["CardType"] == "C" and before <= row["UpdateDate"] <= utcnow()  # type: ignore[operator]


def test_an_existing_customer_is_updated_only_when_it_differs(erp: Engine) -> None:
    partners = ErpPartners()
    with erp.connect() as conn:
        seeded = partners.read(conn, HUAYI.number)
    assert seeded is not None and seeded.crm_id == HUAYI.account_id
    assert seeded.name == HUAYI.name
    with erp.begin() as conn:
        partners.upsert(conn, seeded.model_copy(update={"crm_id": None}))
    assert _row(erp, HUAYI.number)["UpdateDate"] == SEEDED_AT, "equal party: nothing written"
    renamed = seeded.model_copy(update={"name": "上海华谊新材料有限公司", "email": None,
                                        "country": "HK", "crm_id": "acc-new"})
    with erp.begin() as conn:
        assert partners.upsert(conn, renamed) == HUAYI.number
    with erp.connect() as conn:
        assert partners.read(conn, HUAYI.number) == renamed
    assert _row(erp, HUAYI.number)["UpdateDate"] > SEEDED_AT  # type: ignore[operator]
    with erp.begin() as conn:  # no CRM id: the link stays
        partners.upsert(conn, renamed.model_copy(update={"crm_id": None, "name": "华谊"}))
    assert _row(erp, HUAYI.number)["U_CRM_ID"] == "acc-new"


def test_suppliers_are_not_parties_and_too_long_names_are_refused(erp: Engine) -> None:
    partners = ErpPartners()
    with erp.begin() as conn:
        conn.execute(ocrd.insert().values(CardCode="V00001", CardName="Solvent Supply Co.",
                                          CardType="S", UpdateDate=T0))
    with erp.connect() as conn:
        assert partners.read(conn, "V00001") is None
    with erp.begin() as conn, pytest.raises(ForbiddenTransition) as caught:
        partners.upsert(conn, Party(number="V00001", name="Solvent Supply Co."))
    assert str(caught.value) == (
        "business partner V00001 exists in the ERP but is not a customer (its type is 'S'); "
        "it was left unchanged")
    with erp.begin() as conn, pytest.raises(MappingError) as too_long:
        partners.upsert(conn, Party(number="C00200", name="名" * 101))
    assert str(too_long.value) == (
        "customer name too long for the ERP: 101 characters where OCRD.CardName holds at most "
        "100 (nothing was truncated)")
    with erp.connect() as conn:
        assert conn.execute(select(ocrd).where(ocrd.c.CardCode == "C00200")).first() is None


def test_customer_changes_page_by_update_date_then_code(erp: Engine) -> None:
    partners = ErpPartners()
    later = T0 + dt.timedelta(hours=1)
    with erp.begin() as conn:
        conn.execute(ocrd.insert().values(CardCode="V00001", CardName="Supplier",
                                          CardType="S", UpdateDate=later))
        conn.execute(update(ocrd).where(ocrd.c.CardCode == "C00043").values(UpdateDate=later))
    codes = sorted(c.number for c in CUSTOMERS if c.number != "C00043")
    seen: list[tuple[str, dt.datetime]] = []
    after: tuple[dt.datetime, str] | None = None
    with erp.connect() as conn:
        while page := partners.changes(conn, None, after, 4):
            assert len(page) <= 4
            seen += [(c.key, c.changed_at) for c in page]
            after = (page[-1].changed_at, page[-1].key)
        recent = partners.changes(conn, T0, None, 10)
    assert seen == [(code, SEEDED_AT) for code in codes] + [("C00043", later)]
    assert [(c.key, c.row.number, c.row.erp_code, c.version) for c in recent] == [
        ("C00043", "C00043", "C00043", later.isoformat(timespec="microseconds"))]
