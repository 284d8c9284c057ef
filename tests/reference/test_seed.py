"""Seeding is idempotent and what it writes comes back exactly, on every dialect."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import Table, func, select, update

from connectors.crm import schema as crm
from connectors.erp import schema as erp
from connectors.lims import schema as lims
from hub.demo import SeedSummary, create_schemas, seed
from tests.reference.support import Databases, engine_for

NOW = dt.datetime(2026, 3, 2, 9, 15, 30, 123457)

TABLES: dict[str, list[Table]] = {
    "crm": [crm.crm_account, crm.crm_order],
    "erp": [erp.ocrd, erp.oitm, erp.ordr],
    "lims": [lims.product, lims.analysis, lims.product_spec, lims.lot, lims.sample, lims.test,
             lims.result],
}


def _counts(urls: dict[str, str]) -> dict[str, int]:
    counts = {}
    for system, tables in TABLES.items():
        with engine_for(urls[system]) as engine, engine.connect() as conn:
            for table in tables:
                counts[table.name] = conn.execute(
                    select(func.count()).select_from(table)).scalar_one()
    return counts


def test_seed_is_idempotent_and_round_trips(databases: Databases) -> None:
    urls = databases.systems()
    create_schemas(urls)

    first = seed(urls, now=NOW)
    counts = _counts(urls)
    assert first.accounts == counts["crm_account"] >= 8
    assert first.customers == counts["OCRD"] == first.accounts
    assert first.items == counts["OITM"] >= 10
    assert first.lots == counts["LOT"] >= 12
    assert first.results == counts["RESULT"] > first.tests > first.samples
    assert counts["crm_order"] == counts["ORDR"] == 0  # orders come from the sync

    with engine_for(urls["crm"]) as engine, engine.begin() as conn:
        conn.execute(update(crm.crm_account).where(crm.crm_account.c.account_number == "C00043")
                     .values(name="Renamed by a user"))

    second = seed(urls, now=NOW + dt.timedelta(days=1))
    assert second == SeedSummary()
    assert second.total == 0
    assert _counts(urls) == counts

    with engine_for(urls["crm"]) as engine, engine.connect() as conn:
        accounts = {r.account_number: r for r in conn.execute(select(crm.crm_account))}
    assert accounts["C00043"].name == "Renamed by a user"  # a reseed never overwrites
    assert accounts["C00042"].name == "上海华谊精细化工有限公司"
    assert accounts["C00042"].modified_at == NOW  # microseconds survive
    assert accounts["C00042"].erp_customer_code == "C00042"

    with engine_for(urls["erp"]) as engine, engine.connect() as conn:
        partner = conn.execute(select(erp.ocrd).where(erp.ocrd.c.CardCode == "C00042")).one()
        item = conn.execute(select(erp.oitm).where(erp.oitm.c.ItemCode == "ETAC-99")).one()
    assert partner.CardName == "上海华谊精细化工有限公司"
    crm_id = partner.U_CRM_ID
    assert crm_id == accounts["C00042"].account_id
    assert partner.UpdateDate == NOW
    assert (item.ItemName, item.ManBtchNum) == ("Ethyl acetate 99.9%", "Y")

    with engine_for(urls["lims"]) as engine, engine.connect() as conn:
        product = conn.execute(select(lims.product)
                               .where(lims.product.c.NAME == "ETAC-99")).one()
        spec = lims.product_spec
        density = conn.execute(select(spec).where(
            spec.c.PRODUCT == "ETAC-99", spec.c.COMPONENT == "DENSITY")).one()
        purity = conn.execute(select(spec).where(
            spec.c.PRODUCT == "IPA-999", spec.c.GRADE == "ELECTRONIC",
            spec.c.COMPONENT == "PURITY")).one()
        changed = conn.execute(select(lims.lot.c.CHANGED_ON)).scalars().all()
        methods = set(conn.execute(select(lims.analysis.c.X_METHOD)).scalars())
    assert product.X_DESCRIPTION_ZH == "乙酸乙酯"
    low, high = density.MIN_VALUE, density.MAX_VALUE
    assert (low, high) == (Decimal("0.897"), Decimal("0.902"))
    assert isinstance(density.MIN_VALUE, Decimal)
    assert density.X_REPORTED_NAME_ZH == "密度（20 °C）"  # noqa: RUF001
    assert density.UNITS == "g/cm³"
    low, high = purity.MIN_VALUE, purity.MAX_VALUE
    assert low == Decimal("99.99") and high is None
    assert {"ASTM D1209", "GB/T 6283-2008", "ASTM E203", "ISO 759"} <= methods
    assert changed and all(c.microsecond == NOW.microsecond for c in changed)


def test_decimals_and_text_round_trip_exactly(databases: Databases) -> None:
    url = databases.url("crm")
    create_schemas({"crm": url})
    seed({"crm": url}, now=NOW)
    account = crm.crm_account.c.account_id
    with engine_for(url) as engine:
        with engine.begin() as conn:
            account_id = conn.execute(select(account).limit(1)).scalar_one()
            conn.execute(crm.crm_order.insert().values(
                order_id="o-1", order_number="SO-2026-000001", account_id=account_id,
                status="draft", currency="CNY", total_amount=Decimal("9999999999999.99"),
                notes="请于周五前发货 — ship by Friday", version=1, modified_at=NOW,
                modified_by="test"))
            conn.execute(crm.crm_order_line.insert(), [
                {"order_id": "o-1", "line_no": 1, "product_code": "ETAC-99",
                 "quantity": Decimal("123456789012.345"), "unit_price": Decimal("1234.5678")},
                {"order_id": "o-1", "line_no": 2, "product_code": "MEK-995",
                 "quantity": Decimal("0.001"), "unit_price": Decimal("0.0001")},
            ])
        with engine.connect() as conn:
            order = conn.execute(select(crm.crm_order)).one()
            lines = conn.execute(select(crm.crm_order_line)
                                 .order_by(crm.crm_order_line.c.line_no)).all()
    assert order.total_amount == Decimal("9999999999999.99")
    assert order.notes == "请于周五前发货 — ship by Friday"
    assert order.currency == "CNY"
    assert [(ln.quantity, ln.unit_price) for ln in lines] == [
        (Decimal("123456789012.345"), Decimal("1234.5678")),
        (Decimal("0.001"), Decimal("0.0001")),
    ]
    assert lines[0].shipped_quantity == 0  # the server default


def test_seeded_quality_data_is_consistent(tmp_path) -> None:
    """Dialect-free checks of what the certificate logic will meet in the seeded LIMS."""
    dbs = Databases("sqlite", tmp_path)
    urls = dbs.systems()
    create_schemas(urls)
    seed(urls, now=NOW)
    with engine_for(urls["lims"]) as engine, engine.connect() as conn:
        lots = conn.execute(select(lims.lot)).all()
        samples = conn.execute(select(lims.sample)).all()
        tests = conn.execute(select(lims.test)).all()
        results = conn.execute(select(lims.result)).all()
        specs = conn.execute(select(lims.product_spec)).all()
        products = set(conn.execute(select(lims.product.c.NAME)).scalars())
    with engine_for(urls["erp"]) as engine, engine.connect() as conn:
        items = set(conn.execute(select(erp.oitm.c.ItemCode)).scalars())

    assert products == items
    assert {lot.PRODUCT for lot in lots} <= products
    assert all(lot.LOT_NAME.startswith("B2611-") for lot in lots)

    # Most lots are released; one or two are still in the lab (samples P or C).
    by_lot = defaultdict(list)
    for s in samples:
        by_lot[s.LOT].append(s)
    authorised = {n for n, ss in by_lot.items()
                  if any(s.STATUS == "A" and s.SAMPLING_POINT == "RELEASE" for s in ss)}
    pending = {lot.LOT_NUMBER for lot in lots} - authorised
    assert len(authorised) >= 9 and 1 <= len(pending) <= 2
    assert {s.STATUS for n in pending for s in by_lot[n]} == {"P", "C"}

    # One re-sample, pointing at its lot's first sample, which it supersedes.
    resamples = [s for s in samples if s.RE_SAMPLE == "T"]
    assert len(resamples) == 1
    original = next(s for s in samples if s.SAMPLE_NUMBER == resamples[0].ORIGINAL_SAMPLE)
    assert original.LOT == resamples[0].LOT and original.SAMPLE_NUMBER != resamples[0].SAMPLE_NUMBER
    assert original.IN_SPEC == "F" and resamples[0].IN_SPEC == "T"
    assert original.CHANGED_ON < resamples[0].LOGIN_DATE

    # Replicates: 1 and 2 of the same analysis on one sample; only the highest counts.
    reps = defaultdict(set)
    for t in tests:
        reps[(t.SAMPLE_NUMBER, t.ANALYSIS)].add(t.REPLICATE_COUNT)
    assert sum(1 for r in reps.values() if r == {1, 2}) >= 2

    # IN_SPEC agrees with PRODUCT_SPEC, recomputed here independently of the seeding code.
    sample_of = {s.SAMPLE_NUMBER: s for s in samples}
    limits = {(p.PRODUCT, p.GRADE, p.ANALYSIS, p.COMPONENT): p for p in specs}
    checked = 0
    for r in results:
        sample = sample_of[r.SAMPLE_NUMBER]
        spec = limits.get((sample.PRODUCT, sample.PRODUCT_GRADE, r.ANALYSIS, r.NAME))
        if r.ENTRY is None or r.REPORTABLE != "T":
            continue
        assert spec is not None, (r.ANALYSIS, r.NAME)
        if spec.TEXT_VALUE is not None:
            ok = r.ENTRY == spec.TEXT_VALUE
            assert r.RESULT_TYPE == "T"
        else:
            value = Decimal(r.ENTRY)
            ok = ((spec.MIN_VALUE is None or value >= spec.MIN_VALUE)
                  and (spec.MAX_VALUE is None or value <= spec.MAX_VALUE))
            assert r.RESULT_TYPE == "N"
        flag = r.IN_SPEC
        assert flag == ("T" if ok else "F"), (r.RESULT_NUMBER, r.ENTRY)
        checked += 1
    assert checked > 60
    assert any(r.IN_SPEC == "F" for r in results)  # the failed sample and the retest
    assert any(r.REPORTABLE == "F" for r in results)  # working values off the certificate

    # Authorised samples have authorised tests and results; nothing happened after NOW.
    for s in samples:
        if s.STATUS == "A":
            assert s.DATE_REVIEWED is not None and s.REVIEWER
            assert {t.STATUS for t in tests if t.SAMPLE_NUMBER == s.SAMPLE_NUMBER} == {"A"}
    stamps = [x.CHANGED_ON for x in (*lots, *samples, *tests, *results)]
    assert max(stamps) <= NOW
