"""Mappings between each system's records and the canonical model.

Plain field copies, status tables and field owners live here as YAML files a user edits; the
few rules that need logic are small typed functions beside them. The order-sync work adds the
CRM and ERP order mappings.
"""
