"""Histograms and time buckets computed by the database, for :mod:`hub.readings`.

:func:`hist_columns` adds a histogram of one column to a GROUP BY query (a count, a sum and
one cumulative count per bucket), so no row travels to Python; :func:`hist_of` reads it back
into a :class:`Histogram`. :func:`time_bucket` numbers the fixed-width time steps of a naive
UTC timestamp in each dialect the store runs on, for chart series.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import BigInteger

__all__ = ["EPOCH", "Histogram", "hist_columns", "hist_of", "time_bucket"]

EPOCH = dt.datetime(1970, 1, 1)


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per upper bound (seconds), plus the total count and sum (seconds),
    as Prometheus keeps them (the ``+Inf`` bucket is ``count``)."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int = 0
    sum: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds, (0,) * len(bounds))

    def __add__(self, other: Histogram) -> Histogram:
        if other.bounds != self.bounds:
            raise ValueError("histograms with different buckets")
        return Histogram(self.bounds,
                         tuple(a + b for a, b in zip(self.cumulative, other.cumulative,
                                                     strict=True)),
                         self.count + other.count, self.sum + other.sum)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) interpolated within its bucket, as Prometheus's
        ``histogram_quantile``; None when empty; beyond the last bound, the last bound."""
        if not self.count:
            return None
        rank = q * self.count
        lower, below = 0.0, 0
        for bound, at_or_below in zip(self.bounds, self.cumulative, strict=True):
            if at_or_below >= rank and at_or_below > below:
                return lower + (bound - lower) * (rank - below) / (at_or_below - below)
            lower, below = bound, at_or_below
        return self.bounds[-1] if self.bounds else None


def hist_columns(ms: ColumnElement[Any], bounds: Sequence[float]) -> list[ColumnElement[Any]]:
    """Aggregates of the milliseconds in ``ms`` (NULLs ignored): count, sum in seconds
    (a negative value, from clocks that disagree, as 0) and one cumulative count per bound."""
    clamped = case((ms < 0, 0.0), else_=ms)
    return [func.count(ms), func.coalesce(func.sum(clamped), 0.0) / 1000.0,
            *(func.coalesce(func.sum(case((ms <= b * 1000.0, 1), else_=0)), 0)
              for b in bounds)]


def hist_of(row: Sequence[Any], start: int, bounds: tuple[float, ...]) -> Histogram:
    """The histogram whose :func:`hist_columns` begin at ``row[start]``."""
    count, total = int(row[start] or 0), float(row[start + 1] or 0.0)
    cumulative = tuple(int(v or 0) for v in row[start + 2:start + 2 + len(bounds)])
    return Histogram(bounds, cumulative, count, total)


class _bucket(FunctionElement[int]):
    """``(seconds since the epoch of a naive UTC timestamp - origin) // step``."""

    type = BigInteger()
    name = "hub_bucket"
    inherit_cache = True


def time_bucket(at: ColumnElement[Any], origin: dt.datetime, step: int) -> ColumnElement[int]:
    """The number of the ``step``-second bucket since ``origin`` that ``at`` falls in (for
    ``at >= origin``). Origin and step are written into the SQL, not bound, so the same
    expression can be selected and grouped by on PostgreSQL."""
    seconds = int((origin - EPOCH).total_seconds())
    return _bucket(at, literal_column(str(seconds)), literal_column(str(int(step))))


def _args(element: _bucket, compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(c, **kw) for c in element.clauses]


@compiles(_bucket)
def _default(element: _bucket, compiler: SQLCompiler, **kw: Any) -> str:
    at, origin, step = _args(element, compiler, **kw)
    return f"CAST(FLOOR((EXTRACT(EPOCH FROM {at}) - {origin}) / {step}) AS BIGINT)"


@compiles(_bucket, "sqlite")
def _sqlite(element: _bucket, compiler: SQLCompiler, **kw: Any) -> str:
    at, origin, step = _args(element, compiler, **kw)
    return f"((CAST(strftime('%s', {at}) AS INTEGER) - {origin}) / {step})"


@compiles(_bucket, "mysql")
@compiles(_bucket, "mariadb")
def _mysql(element: _bucket, compiler: SQLCompiler, **kw: Any) -> str:
    at, origin, step = _args(element, compiler, **kw)
    return f"((TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {at}) - {origin}) DIV {step})"


@compiles(_bucket, "mssql")
def _mssql(element: _bucket, compiler: SQLCompiler, **kw: Any) -> str:
    at, origin, step = _args(element, compiler, **kw)
    return f"((DATEDIFF_BIG(second, '1970-01-01', {at}) - {origin}) / {step})"
