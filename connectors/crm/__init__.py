"""The CRM connector: the reference sales CRM's tables and, beside them, its reader and writer."""
