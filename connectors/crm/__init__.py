"""The CRM connector: the reference sales CRM's tables and, beside them, its reader and writer.

:class:`CrmOrders` reads orders (and polls their changes) as canonical orders and writes back
what the ERP did; :class:`CrmAccounts` does the same for customer accounts;
:class:`CrmShipments` records ERP deliveries as CRM shipments. Each takes an open connection
to the CRM database and never commits: the caller owns the transaction.
"""

from connectors.crm.accounts import CrmAccounts, PartyRow
from connectors.crm.orders import INTEGRATION_STATUSES, CrmOrders, OrderRow
from connectors.crm.shipments import UNBATCHED, CrmShipments

__all__ = [
    "INTEGRATION_STATUSES",
    "UNBATCHED",
    "CrmAccounts",
    "CrmOrders",
    "CrmShipments",
    "OrderRow",
    "PartyRow",
]
