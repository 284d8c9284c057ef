"""The demo: the three reference systems' schemas, their seed data and ``demo init``."""

from hub.demo.reference import (
    SYSTEMS,
    SeedSummary,
    System,
    create_schemas,
    ensure_database,
    ensure_embedded,
    init,
    metadata_for,
    seed,
)

__all__ = [
    "SYSTEMS",
    "SeedSummary",
    "System",
    "create_schemas",
    "ensure_database",
    "ensure_embedded",
    "init",
    "metadata_for",
    "seed",
]
