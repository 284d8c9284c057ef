"""The ERP connector: SAP Business One-style sales documents, their reader and writer.

- :mod:`connectors.erp.schema` — the reference ERP's tables and its DocNum series.
- :class:`ErpOrders` — sales orders (ORDR/RDR1): read with delivery and invoice progress,
  create, update, cancel, and the change stream (an order changes when it, a delivery of it
  or an invoice of such a delivery is written).
- :class:`ErpDeliveries` / :class:`ErpInvoices` — deliveries with batches (ODLN/DLN1/IBT1)
  and invoices (OINV/INV1), read-only, and their change streams.
- :class:`ErpPartners` — customers (OCRD): read, create or update, change stream.

Every method takes an open connection to the ERP database and never commits: the caller owns
the transaction. Failures are the hub's errors (``hub.errors``); a sales person can act on
the message of every PermanentError raised here.
"""

from connectors.erp.documents import ErpDeliveries, ErpInvoices
from connectors.erp.orders import ErpOrders
from connectors.erp.partners import ErpPartners

__all__ = ["ErpDeliveries", "ErpInvoices", "ErpOrders", "ErpPartners"]
