"""The canonical model: records every connector maps to, and the messages on the bus."""

from hub.model.messages import (
    AnyMessage,
    CertificateIssued,
    DeliveryPosted,
    InvoicePosted,
    LotReleased,
    Message,
    OrderChanged,
    OrderStatusChanged,
    PartyChanged,
    decode,
    encode,
    partition_of,
    routing_key,
)
from hub.model.records import (
    BatchAllocation,
    CertificateRef,
    Delivery,
    DeliveryLine,
    Invoice,
    InvoiceLine,
    Lot,
    Order,
    OrderLine,
    OrderStatus,
    Party,
)

__all__ = [
    "AnyMessage", "BatchAllocation", "CertificateIssued", "CertificateRef", "Delivery",
    "DeliveryLine", "DeliveryPosted", "Invoice", "InvoiceLine", "InvoicePosted", "Lot",
    "LotReleased", "Message", "Order", "OrderChanged", "OrderLine", "OrderStatus",
    "OrderStatusChanged", "Party", "PartyChanged", "decode", "encode", "partition_of",
    "routing_key",
]
