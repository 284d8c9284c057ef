"""The ERP connector: SAP Business One-style sales documents, their reader and writer."""
