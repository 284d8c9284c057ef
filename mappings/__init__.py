"""Mappings between each system's records and the canonical model.

Plain field copies, value tables and create-only fields live in ``crm.yaml`` and ``erp.yaml``;
who wins a conflict lives in ``ownership.yaml``. ``hub.mapping`` loads and validates them.
The few rules that need logic (an order's status from its ERP documents) are small typed
functions in :mod:`mappings.rules`.
"""
