"""ERP business partners (OCRD) as canonical Parties: read, create or update, and what changed.

Only customers (CardType ``C``) are Parties; suppliers and leads in the same table are not
the hub's business, and the hub refuses to turn one into a customer. Field copies come from
the ``party`` entity of ``mappings/erp.yaml``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from connectors.erp.common import (
    as_changes,
    changed_rows,
    check_lengths,
    chunked,
    db_errors,
    field_label,
    validated,
)
from connectors.erp.schema import ocrd
from hub.errors import ForbiddenTransition, InvalidMessage, MappingError
from hub.mapping import EntityMapping, SystemMapping, load_mapping
from hub.model.records import Party
from hub.store.types import utcnow
from hub.watermark import Change

__all__ = ["ErpPartners"]

_CUSTOMER = "C"


class ErpPartners:
    """Reads and writes the ERP's customers."""

    def __init__(self, mapping: SystemMapping | None = None) -> None:
        self.mapping = mapping if mapping is not None else load_mapping("erp")
        self._party: EntityMapping = self.mapping.entity("party")

    def read(self, conn: Connection, card_code: str) -> Party | None:
        """The customer ``card_code`` (exactly that code); None when there is no such customer.

        Raises MappingError for a row the canonical model cannot hold, and database errors.
        """
        with db_errors(f"ERP: read business partner {card_code}"):
            row = _card(conn, card_code)
        if row is None or row.CardCode != card_code or _type(row) != _CUSTOMER:
            return None
        return self._canonical(row)

    def upsert(self, conn: Connection, party: Party) -> str:
        """Create the customer (CardCode = ``erp_code`` or ``number``) or update its name,
        e-mail, country and CRM id; returns the CardCode. A party equal to what is stored
        writes nothing, so it does not come back as an ERP change.

        Raises ForbiddenTransition when the code belongs to a partner that is not a
        customer, MappingError when a value does not fit its column, and database errors.
        """
        code = party.erp_code or party.number
        wanted: dict[str, Any] = {
            "erp_code": code, "name": party.name, "email": party.email,
            "country": party.country,
        }
        if party.crm_id is not None:  # a Party without one must not unlink the customer
            wanted["crm_id"] = party.crm_id
        columns = self._party.to_columns(wanted, creating=True)
        check_lengths(ocrd, columns, self._label)
        with db_errors(f"ERP: write business partner {code}"):
            row = _card(conn, code)
            if row is None:
                savepoint = conn.begin_nested()
                try:
                    conn.execute(insert(ocrd).values(
                        {**columns, "CardType": _CUSTOMER, "UpdateDate": utcnow()}))
                except IntegrityError:
                    savepoint.rollback()
                    # Another writer created it meanwhile; a locking read sees its commit
                    # even under InnoDB's fixed snapshot.
                    row = _card(conn, code, locking=True)
                    if row is None:
                        raise
                else:
                    savepoint.commit()
                    return code
            self._update(conn, row, code, self._party.to_columns(wanted, creating=False))
        return str(row.CardCode)

    def changes(
        self,
        conn: Connection,
        lower: dt.datetime | None,
        after: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[Change[Party | InvalidMessage]]:
        """Customers by ``(UpdateDate, CardCode)`` (the :data:`hub.watermark.Fetch`
        contract; codes compare as the database's collation orders them). A partner that
        cannot be expressed canonically comes back with the InvalidMessage as its row, so
        one bad partner cannot stall the stream (nor the ERP's other streams)."""
        with db_errors("ERP: list changed business partners"):
            changed = changed_rows(conn, ocrd, ocrd.c.CardCode, lower, after, limit,
                                   ocrd.c.CardType == _CUSTOMER)
            parties: dict[str, Party | InvalidMessage] = {}
            for chunk in chunked([code for code, _ in changed]):
                for row in conn.execute(select(ocrd).where(ocrd.c.CardCode.in_(chunk))):
                    try:
                        parties[row.CardCode] = self._canonical(row)
                    except MappingError as exc:
                        parties[row.CardCode] = InvalidMessage(str(exc))
        return as_changes(changed, parties, str)

    def _update(self, conn: Connection, row: Row[Any], code: str, columns: dict[str, Any]) -> None:
        if row.CardCode != code:
            raise MappingError(
                f"the ERP already has business partner {row.CardCode}, which differs from "
                f"{code} only in letter case")
        if _type(row) != _CUSTOMER:
            raise ForbiddenTransition(
                f"business partner {code} exists in the ERP but is not a customer "
                f"(its type is {row.CardType!r}); it was left unchanged")
        stored = row._asdict()
        if all(stored.get(name) == value for name, value in columns.items()):
            return
        conn.execute(update(ocrd).where(ocrd.c.CardCode == code)
                     .values({**columns, "UpdateDate": utcnow()}))

    def _canonical(self, row: Row[Any]) -> Party:
        values = self._party.to_canonical(row._asdict())
        values["number"] = row.CardCode
        return validated(Party, values, f"ERP business partner {row.CardCode}")

    def _label(self, column: str) -> str:
        return f"customer {field_label(self._party, column)}"


def _card(conn: Connection, code: str, *, locking: bool = False) -> Row[Any] | None:
    query = select(ocrd).where(ocrd.c.CardCode == code)
    return conn.execute(query.with_for_update() if locking else query).first()


def _type(row: Row[Any]) -> str:
    return str(row.CardType or "").strip()
