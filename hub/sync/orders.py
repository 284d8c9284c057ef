"""What order sync means, shared by the CRM and ERP connectors: which fields flow which way,
who owns them, and how a side's state is remembered."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from hub.mapping import ownership
from hub.model.records import Order, Party
from hub.sync.merge import project
from hub.sync.state import Side, SyncState, older
from hub.sync.xref import Xref
from hub.watermark import Change

__all__ = [
    "ALL_FIELDS",
    "PARTY_FIELDS",
    "REFUSED",
    "TO_CRM",
    "TO_ERP",
    "known_whole",
    "older",
    "order_owner",
    "party_fields",
    "refused_before",
    "remember_refused",
    "remember_source",
    "remember_written",
]

#: Fields a CRM change can carry to the ERP.
TO_ERP = ("customer_po", "requested_date", "notes", "lines", "cancelled")
#: Fields an ERP change can carry to the CRM.
TO_CRM = ("customer_po", "requested_date", "notes", "lines", "promised_date", "erp_doc_num",
          "status")
#: What an ERP order change can tell the CRM: the fields, and what was shipped per line.
FROM_ERP = (*TO_CRM, "shipped")
ALL_FIELDS = tuple(dict.fromkeys(TO_ERP + FROM_ERP))
PARTY_FIELDS = ("name", "country", "email")


def order_owner(*, delivered: bool, crm_status: str | None = None) -> Callable[[str], str]:
    """Who wins a conflict on each field of an order in its current state.

    Either side may cancel: a CRM cancellation that has not reached the ERP yet is never
    overwritten by the ERP's status (the ERP refuses it if the order has shipped, and says so).
    """
    owners = ownership()

    def owner(field: str) -> str:
        if field == "cancelled":
            return "crm"
        if field == "status" and crm_status == "cancelled":
            return "crm"
        return owners.owner(field, delivered=delivered)

    return owner


def remember_source(side: Side, version: str, order: Order) -> None:
    """What the hub now knows of the side a message came from: all of it, at that version."""
    side.version = version
    side.fields = project(order, ALL_FIELDS)
    side.whole = True


def known_whole(hub: Connection, changes: Sequence[Change[Any]], system: str
                ) -> set[tuple[str, str]]:
    """The ``(key, version)`` of the order changes polled from ``system`` that the hub knows
    whole at that very version (:attr:`Side.whole`): an order the hub created, or answered
    straight after the version it knew whole. Reading them would find nothing new: they are
    its own writes. Another writer would have to stamp the same version (the same
    microsecond in the ERP) to be taken for one, as it would to hide in the watermark's
    seen-set."""
    cids = Xref.canonical_many(hub, "order", system, [c.key for c in changes])
    known = SyncState.versions_many(hub, "order", sorted(set(cids.values())))
    sides = {key: known.get(cid, {}).get(system) for key, cid in cids.items()}
    return {(c.key, c.version) for c in changes
            if (side := sides.get(c.key)) is not None and side.whole
            and side.version == c.version}


#: The side under which the hub keeps the CRM content of an order the ERP refused.
REFUSED = "crm-refused"


def remember_refused(side: Side, version: str, order: Order) -> None:
    """The CRM content the ERP refused (e.g. a cancel after shipment): the CRM poller does
    not send the same content again, so a refusal is answered once, not on every poll."""
    side.version = version
    side.fields = project(order, TO_ERP)


def refused_before(side: Side, order: Order) -> bool:
    """True when ``order`` carries exactly the CRM content the ERP refused last time."""
    return bool(side.fields) and side.fields == project(order, TO_ERP)


def remember_written(side: Side, version: str | None, values: Mapping[str, Any], *,
                     whole: bool = False) -> None:
    """What the hub wrote into a side: only those fields, so an edit a person made there
    meanwhile (not yet polled) still shows as a change of that side. ``whole``: the side
    is now known whole at ``version`` (see :attr:`Side.whole`): the hub created the record
    and read it back, or wrote the version right after one it knew whole."""
    if version is not None:
        side.version = version
    side.fields.update(values)
    side.whole = whole


def party_fields(party: Party, names: Iterable[str] = PARTY_FIELDS) -> dict[str, Any]:
    return {name: getattr(party, name) for name in names}
