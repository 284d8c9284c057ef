"""The ERP order change stream: own writes, later deliveries and invoices, paging by key."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, update

from connectors.erp import ErpOrders
from connectors.erp.schema import ordr
from hub.errors import InvalidMessage
from hub.model.records import Order
from hub.store import Store
from hub.watermark import Change, Watermark
from tests.connectors.erp.kit import T0, deliver, invoice, line, order, stamp

LATER = T0 + dt.timedelta(hours=1)
LATEST = T0 + dt.timedelta(hours=2, microseconds=7)


def _pages(erp: Engine, lower: dt.datetime | None, limit: int) -> list[list[Change[Order]]]:
    """Read the whole stream page by page, the way the watermark does."""
    orders, pages = ErpOrders(), list[list[Change[Order]]]()
    after: tuple[dt.datetime, str] | None = None
    with erp.connect() as conn:
        while True:
            page = orders.changes(conn, lower, after, limit)
            if not page:
                return pages
            pages.append(page)
            after = (page[-1].changed_at, page[-1].key)


def test_a_later_delivery_or_invoice_brings_the_order_back(erp: Engine) -> None:
    orders = ErpOrders()
    with erp.begin() as conn:
        entry, _ = orders.create(conn, order(line(1, quantity="5")), confirmed=True)
        quiet, _ = orders.create(conn, order(crm_id="quiet"), confirmed=True)
        stamp(conn, ordr, entry, T0)
        stamp(conn, ordr, quiet, T0)
    since = T0 + dt.timedelta(minutes=1)
    with erp.connect() as conn:
        assert orders.changes(conn, since, None, 10) == []
        everything = orders.changes(conn, None, None, 10)
    assert [c.key for c in everything] == [f"{entry:012d}", f"{quiet:012d}"]

    with erp.begin() as conn:
        delivery, _ = deliver(conn, entry, [(0, "5", [("LOT-1", "5")])], at=LATER)
    with erp.connect() as conn:
        shipped = orders.changes(conn, since, None, 10)
    assert [(c.key, c.changed_at) for c in shipped] == [(f"{entry:012d}", LATER)]
    assert shipped[0].version == "2026-03-02T10:00:00.000001"
    assert shipped[0].row.status == "shipped" and shipped[0].row.lines[0].shipped_quantity == 5

    with erp.begin() as conn:
        invoice(conn, delivery, [(0, "5")], at=LATEST)
    with erp.connect() as conn:
        billed = orders.changes(conn, LATER + dt.timedelta(seconds=1), None, 10)
        # The invoice is the newest stamp of the order, whatever bound brought it in.
        again = orders.changes(conn, since, None, 10)
    assert [(c.key, c.changed_at) for c in billed] == [(f"{entry:012d}", LATEST)]
    assert billed[0].version == LATEST.isoformat(timespec="microseconds")
    assert billed[0].row.status == "invoiced"
    assert [c.changed_at for c in again] == [LATEST]


def test_pages_follow_changed_at_then_numeric_key(erp: Engine) -> None:
    orders = ErpOrders()
    with erp.begin() as conn:
        entries = [orders.create(conn, order(crm_id=f"o{n}"), confirmed=True)[0]
                   for n in range(12)]
        for entry in entries:
            stamp(conn, ordr, entry, T0)  # all in one instant: the key decides
        stamp(conn, ordr, entries[0], LATER)  # the first one edited again later
    expected = [*entries[1:], entries[0]]
    assert max(entries) >= 10, "keys must cross a digit boundary for this test to mean much"

    pages = _pages(erp, None, 5)
    flat = [c for page in pages for c in page]
    assert [len(page) for page in pages] == [5, 5, 2]
    assert [c.row.erp_doc_entry for c in flat] == expected
    assert [int(c.key) for c in flat] == expected
    assert sorted(c.key for c in flat[:-1]) == [c.key for c in flat[:-1]]
    assert all(len(c.key) == 12 for c in flat)
    assert [c.changed_at for c in flat] == [T0] * 11 + [LATER]

    with erp.connect() as conn:
        tail = orders.changes(conn, T0, (T0, flat[9].key), 50)
        after_all = orders.changes(conn, None, (LATER, flat[-1].key), 50)
    assert [c.row.erp_doc_entry for c in tail] == expected[10:]
    assert after_all == []


def test_paging_gives_each_order_once_at_its_latest_stamp_whatever_the_page_size(
        erp: Engine) -> None:
    """Later pages group only the stamps from the last page's moment on: an order written
    early and delivered (or invoiced) late must still come once, late, and one delivered
    early and written late must come at its own stamp."""
    orders = ErpOrders()
    second = dt.timedelta(seconds=1)
    latest: dict[int, dt.datetime] = {}
    with erp.begin() as conn:
        for n in range(9):
            entry = orders.create(conn, order(line(1, quantity="4"), crm_id=f"p{n}"),
                                  confirmed=True)[0]
            own = T0 + n * second
            stamp(conn, ordr, entry, own)
            latest[entry] = own
            if n % 3 == 1:  # delivered well after later orders were written
                shipped = T0 + (20 - n) * second
                delivery, _ = deliver(conn, entry, [(0, "4", [])], at=shipped)
                latest[entry] = shipped
                if n == 4:  # and invoiced later still
                    invoice(conn, delivery, [(0, "4")], at=T0 + 30 * second)
                    latest[entry] = T0 + 30 * second
            if n == 6:  # delivered before its header was written again
                deliver(conn, entry, [(0, "1", [])], at=T0)
    expected = sorted(latest, key=lambda entry: (latest[entry], entry))
    for lower in (None, T0, T0 + 3 * second):
        wanted = [e for e in expected if lower is None or latest[e] >= lower]
        for limit in (1, 2, 4, 50):
            flat = [c for page in _pages(erp, lower, limit) for c in page]
            assert [(c.row.erp_doc_entry, c.changed_at) for c in flat] == [
                (e, latest[e]) for e in wanted], (lower, limit)


def test_a_watermark_takes_each_order_version_once(erp: Engine, sqlite_store: Store) -> None:
    orders, mark = ErpOrders(), Watermark("erp.ORDR", overlap=dt.timedelta(hours=3))
    with erp.begin() as conn:
        entries = [orders.create(conn, order(crm_id=f"w{n}"), confirmed=True)[0]
                   for n in range(3)]
        for entry in entries:
            stamp(conn, ordr, entry, T0)

    def poll() -> list[Change[Order]]:
        with erp.connect() as source, sqlite_store.begin() as hub:
            taken = mark.poll(hub, lambda lower, after, limit: orders.changes(
                source, lower, after, limit), limit=2)
            mark.commit(hub, taken)
        return taken

    first = poll() + poll()
    assert [c.row.erp_doc_entry for c in first] == entries
    assert poll() == [], "the overlap window is re-read, nothing is taken twice"
    with erp.begin() as conn:
        deliver(conn, entries[1], [(0, "1", [])], at=LATER)
    again = poll()
    assert [(c.row.erp_doc_entry, c.row.status) for c in again] == [
        (entries[1], "partially_shipped")]


def test_one_order_the_model_refuses_does_not_hide_the_others(erp: Engine) -> None:
    """A value the mapping has no entry for (Confirmed = 'X', typed in by hand) makes that
    order an InvalidMessage in its place on the page; the orders around it still come."""
    orders = ErpOrders()
    with erp.begin() as conn:
        entries = [orders.create(conn, order(crm_id=f"o{n}"), confirmed=True)[0]
                   for n in range(3)]
        for n, entry in enumerate(entries):
            stamp(conn, ordr, entry, T0 + dt.timedelta(seconds=n))
        conn.execute(update(ordr).where(ordr.c.DocEntry == entries[1]).values(Confirmed="X"))
    with erp.connect() as conn:
        keys = orders.changed_keys(conn, None, None, 10)
        assert [c.row for c in keys] == [None, None, None]
        page = orders.load(conn, keys)
    assert [c.key for c in page] == [c.key for c in keys]
    assert isinstance(page[0].row, Order) and isinstance(page[2].row, Order)
    assert isinstance(page[1].row, InvalidMessage)
    assert f"ERP order {entries[1]}" in str(page[1].row) and "'X'" in str(page[1].row)
