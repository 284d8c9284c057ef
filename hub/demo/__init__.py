"""The demo: the three reference systems' schemas, their seed data, ``demo init``, and the
people of ``demo simulate`` (:mod:`hub.demo.people`, :mod:`hub.demo.simulator`,
:mod:`hub.demo.simulate`)."""

from hub.demo.people import ErpUser, LabPerson, Line, SalesPerson
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
from hub.demo.simulate import Summary, simulate

__all__ = [
    "SYSTEMS",
    "ErpUser",
    "LabPerson",
    "Line",
    "SalesPerson",
    "SeedSummary",
    "Summary",
    "System",
    "create_schemas",
    "ensure_database",
    "ensure_embedded",
    "init",
    "metadata_for",
    "seed",
    "simulate",
]
