"""Fresh planner statistics for the hub's own tables while they grow (PostgreSQL).

PostgreSQL plans each query from its statistics of the tables, and autovacuum refreshes them
at most once a minute per database (``autovacuum_naptime``). When the hub first meets a
backlog, its tables grow from nothing to hundreds of thousands of rows within that minute, and
the plans made while they were nearly empty stay with the prepared statements: the
cross-references of 500 orders were found by reading every order's cross-reference, the
seen-set of a page by reading every row seen in its time range. A 20,000-order backlog drained
at 255 orders/s with those plans and at 301-312 with statistics kept fresh (``docs/benchmarks.md``).

So the hub analyzes its own tables that have at least doubled since they were last analyzed
(and have some size); once a table is large, autovacuum's own threshold (a tenth of it) comes
first, and this steps aside. Other tables in the same database are not the hub's to analyze.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, bindparam, text

from hub.store.tables import metadata

__all__ = ["refresh_statistics"]

log = logging.getLogger(__name__)

#: Fewer changed rows than this are never worth an ANALYZE of their own.
FLOOR = 1000

_STALE = text("""
    SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.schemaname = current_schema() AND s.relname IN :names
      AND s.n_mod_since_analyze > greatest(:floor, c.reltuples)
    ORDER BY s.relname
""").bindparams(bindparam("names", expanding=True))


def refresh_statistics(conn: Connection, floor: int = FLOOR) -> list[str]:
    """ANALYZE the hub's tables that changed by more than ``floor`` rows and more rows than
    they held when last analyzed; returns their names. Does nothing off PostgreSQL."""
    if conn.dialect.name != "postgresql":
        return []
    stale = list(conn.execute(_STALE, {"names": sorted(metadata.tables), "floor": floor})
                 .scalars())
    quote = conn.dialect.identifier_preparer.quote
    for name in stale:
        conn.execute(text(f"ANALYZE {quote(name)}"))
    if stale:
        log.debug("analyzed %s", ", ".join(stale))
    return stale
