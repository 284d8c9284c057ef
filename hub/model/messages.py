"""The messages on the bus: canonical records wrapped with identity, type and version.

Every message has a ``type`` (``order.changed`` ...) and a ``schema_version``; decoding picks the
class from those two, so a consumer can read old versions alongside new ones. The routing key is
``<source>.<type>.p<partition>``, the partition chosen by the correlation key, so changes to one
order stay in one ordered stream while different orders spread over partitions.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zlib
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hub.errors import InvalidMessage
from hub.model.base import System
from hub.model.records import CertificateRef, Delivery, Invoice, Lot, Order, OrderStatus, Party

__all__ = [
    "AnyMessage",
    "CertificateIssued",
    "DeliveryPosted",
    "InvoicePosted",
    "LotReleased",
    "Message",
    "OrderChanged",
    "OrderStatusChanged",
    "PartyChanged",
    "decode",
    "encode",
    "partition_of",
    "routing_key",
]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Message(BaseModel):
    """Envelope fields every message carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    schema_version: int
    message_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique per message")
    correlation_key: str = Field(
        ..., min_length=1, max_length=64, description="Order number, DocNum or batch number"
    )
    source: System = Field(..., description="System the change came from")
    source_version: str = Field(
        ..., max_length=64, description="Version of the source record (orders: its version)"
    )
    occurred_at: dt.datetime = Field(
        default_factory=_now, description="When the source committed the change (UTC)"
    )
    causation_id: uuid.UUID | None = Field(None, description="The message that caused this one")

    #: What the message is about, for logs and the journal.
    subject: ClassVar[str] = ""


class PartyChanged(Message):
    type: Literal["party.changed"] = "party.changed"
    schema_version: Literal[1] = 1
    subject: ClassVar[str] = "party"
    party: Party


class OrderChanged(Message):
    """The full current state of an order in its source system (state transfer, not a diff)."""

    type: Literal["order.changed"] = "order.changed"
    schema_version: Literal[1] = 1
    subject: ClassVar[str] = "order"
    order: Order


class OrderStatusChanged(Message):
    """What the target made of an order: its number there, status, or why it failed."""

    type: Literal["order.status"] = "order.status"
    schema_version: Literal[1] = 1
    subject: ClassVar[str] = "order"
    order_number: str | None = None
    crm_id: str | None = None
    erp_doc_entry: int | None = None
    erp_doc_num: int | None = None
    status: OrderStatus | None = None
    integration_status: Literal["pending", "synced", "error"]
    integration_message: str | None = Field(None, max_length=1000)


class DeliveryPosted(Message):
    type: Literal["delivery.posted"] = "delivery.posted"
    schema_version: Literal[1] = 1
    subject: ClassVar[str] = "delivery"
    delivery: Delivery


class InvoicePosted(Message):
    type: Literal["invoice.posted"] = "invoice.posted"
    schema_version: Literal[1] = 1
    subject: ClassVar[str] = "invoice"
    invoice: Invoice


class LotReleased(Message):
    type: Literal["lot.released"] = "lot.released"
    schema_version: Literal[1] = 1
    subject: ClassVar[str] = "lot"
    lot: Lot


class CertificateIssued(Message):
    type: Literal["certificate.issued"] = "certificate.issued"
    schema_version: Literal[1] = 1
    subject: ClassVar[str] = "certificate"
    certificate: CertificateRef


AnyMessage = Annotated[
    PartyChanged | OrderChanged | OrderStatusChanged | DeliveryPosted | InvoicePosted
    | LotReleased | CertificateIssued,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyMessage)


def encode(message: Message) -> bytes:
    """Serialise a message to the JSON bytes that go on the bus."""
    return message.model_dump_json().encode("utf-8")


def decode(body: bytes | str) -> Message:
    """Parse bus bytes into the right message class.

    Raises :class:`InvalidMessage` (permanent) with a readable reason when the body is not
    JSON, names an unknown type or version, or fails validation.
    """
    try:
        message: Message = _ADAPTER.validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            _clip(f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}")
            for err in exc.errors(include_url=False)[:5]
        )
        raise InvalidMessage(f"message does not match the canonical model: {problems}") from exc
    return message


def _clip(problem: str, limit: int = 300) -> str:
    # Pydantic quotes the offending input: a megabyte of it must not become the reason
    # stored with a dead letter (or shown to a sales person).
    return problem if len(problem) <= limit else problem[:limit - 3] + "..."


def partition_of(key: str, partitions: int) -> int:
    """Stable partition for a correlation key (the same in every process and run)."""
    return zlib.crc32(key.encode("utf-8")) % partitions


def routing_key(message: Message, partitions: int) -> str:
    """``<source>.<type>.p<n>``, e.g. ``crm.order.changed.p2``."""
    return f"{message.source}.{message.type}.p{partition_of(message.correlation_key, partitions)}"
