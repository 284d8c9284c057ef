"""Customer accounts in the CRM: read them as canonical parties, poll their changes, create
the ones entered in the ERP, and write back the ERP customer code.

Plain field copies go through ``mappings/crm.yaml`` (entity ``party``); ``account_id`` and the
``modified_*`` bookkeeping are the schema's own. Every method takes an open connection to the
CRM and leaves the transaction to the caller.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, RowMapping, select, update

from connectors.crm.schema import crm_account
from connectors.crm.support import (
    HUB_USER,
    checked_columns,
    db_errors,
    describe_problems,
    mapped_column,
)
from hub.errors import InvalidMessage, MappingError, UnknownReference
from hub.mapping import SystemMapping, load_mapping
from hub.model.records import Party
from hub.store.types import utcnow
from hub.watermark import Change, window

__all__ = ["CrmAccounts", "PartyRow"]

#: What ``changes`` carries per account: the party, or why its row is not a valid party.
PartyRow = Party | InvalidMessage

_WHERE = "mappings/crm.yaml (party)"


class CrmAccounts:
    """Reader and writer of ``crm_account``."""

    def __init__(self, mapping: SystemMapping | None = None) -> None:
        system = mapping if mapping is not None else load_mapping("crm")
        self._party = system.entity("party")
        self._number = crm_account.c[mapped_column(self._party, "number", _WHERE)]
        self._code = crm_account.c[mapped_column(self._party, "erp_code", _WHERE)]

    def read(self, conn: Connection, account_id: str) -> Party | None:
        """The account as a party, or None when there is no such account.

        Raises InvalidMessage when the row is not a valid party (the text names the
        customer and the field), MappingError when a value cannot be translated.
        """
        with db_errors(f"read CRM account {account_id}"):
            row = conn.execute(select(crm_account).where(crm_account.c.account_id == account_id)
                               ).mappings().first()
        return None if row is None else self._build(row)

    def find_by_number(self, conn: Connection, number: str) -> str | None:
        """The account_id of the account with customer number ``number``, or None."""
        with db_errors(f"find CRM account {number}"):
            return self._id_where(conn, self._number == number)

    def find_by_erp_code(self, conn: Connection, code: str) -> str | None:
        """The account_id of the account the ERP knows as ``code``, or None.

        Looks at the ERP customer code first, then at the customer number (the default
        ERP code). Raises MappingError when several accounts carry the code.
        """
        with db_errors(f"find CRM account of ERP customer {code}"):
            ids = list(conn.execute(select(crm_account.c.account_id)
                                    .where(self._code == code).limit(2)).scalars())
            if len(ids) > 1:
                raise MappingError(f"ERP customer {code} is linked to more than one CRM "
                                   "account; keep the code on one of them only")
            if ids:
                found: str = ids[0]
                return found
            return self._id_where(conn, self._number == code)

    def create(self, conn: Connection, party: Party) -> str:
        """Create the account of a customer entered in the ERP; returns its account_id.

        When an account with the party's customer number exists already, its id is returned
        and nothing changes.
        """
        with db_errors(f"create CRM account {party.number}"):
            existing = self._id_where(conn, self._number == party.number)
            if existing is not None:
                return existing
            account_id = str(uuid.uuid4())
            values = self._party.to_columns(
                {**party.model_dump(), "crm_id": account_id}, creating=True)
            values.update(account_id=account_id, modified_by=HUB_USER, modified_at=utcnow())
            conn.execute(crm_account.insert().values(checked_columns(crm_account, values)))
        return account_id

    def set_erp_code(self, conn: Connection, account_id: str, code: str) -> None:
        """Record the ERP's customer code on the account. Raises UnknownReference."""
        with db_errors(f"set the ERP customer code of CRM account {account_id}"):
            values = self._party.to_columns({"erp_code": code}, creating=False)
            values.update(modified_by=HUB_USER, modified_at=utcnow())
            done = conn.execute(update(crm_account)
                                .where(crm_account.c.account_id == account_id)
                                .values(checked_columns(crm_account, values)))
            if done.rowcount == 0 and self._id_where(
                    conn, crm_account.c.account_id == account_id) is None:
                raise UnknownReference(f"the CRM has no customer account {account_id}")

    def changes(self, conn: Connection, lower: dt.datetime | None,
                after: tuple[dt.datetime, str] | None, limit: int) -> list[Change[PartyRow]]:
        """Accounts changed at or after ``lower`` and after ``after``, oldest first.

        The :data:`hub.watermark.Fetch` of the account stream: ordered by (modified_at,
        account_id), at most ``limit``; the version is modified_at to the microsecond. An
        account whose row is not a valid party comes back in place with the InvalidMessage
        as its ``row``.
        """
        query = select(crm_account)
        query = window(query, crm_account.c.modified_at, crm_account.c.account_id, lower, after,
                       limit)
        with db_errors("poll CRM accounts"):
            rows = conn.execute(query).mappings().all()
        return [
            Change(key=row["account_id"],
                   version=row["modified_at"].isoformat(timespec="microseconds"),
                   changed_at=row["modified_at"], row=self._build_or_problem(row))
            for row in rows
        ]

    def _id_where(self, conn: Connection, condition: Any) -> str | None:
        found: str | None = conn.execute(
            select(crm_account.c.account_id).where(condition).limit(1)).scalar()
        return found

    def _build(self, row: RowMapping) -> Party:
        data = self._party.to_canonical(dict(row))
        subject = f"customer {data.get('number') or row['account_id']}"
        try:
            return Party.model_validate(data)
        except ValidationError as exc:
            raise InvalidMessage(describe_problems(exc, subject)) from exc

    def _build_or_problem(self, row: RowMapping) -> PartyRow:
        try:
            return self._build(row)
        except InvalidMessage as exc:
            return exc
        except MappingError as exc:
            problem = InvalidMessage(str(exc))
            problem.__cause__ = exc
            return problem
