"""The hub's HTTP service."""
