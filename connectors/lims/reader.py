"""What the LIMS says about a batch's release, read set-based for its certificate of analysis.

A certificate shows one sample: the lot's newest authorised (``STATUS`` ``A``) ``RELEASE``
sample, by ``DATE_REVIEWED`` then ``SAMPLE_NUMBER``. A re-sample (``RE_SAMPLE`` ``T``)
supersedes the sample its ``ORIGINAL_SAMPLE`` names as soon as it exists, unless it was
rejected or cancelled: once the lab has decided to sample again, the original's results are
not the lot's release results any more, even while the re-sample is still being tested.
Of that sample the certificate shows the authorised tests' authorised, reportable results;
of replicates only the highest ``REPLICATE_COUNT`` per (analysis, component) among those
counts, since a retest replaces the result before it. A line reports FORMATTED_ENTRY (else
ENTRY), and its number is parsed from that reported text, so that the value printed and the
verdict printed beside it (:mod:`certificates.verdict`) cannot contradict each other.

Reading a lot takes three SELECTs whatever its size (lot and product; its release samples;
results joined to tests, limits and methods), and reading many lots takes the same three per
500 lots, so rendering certificates in bulk costs no query per result or per lot.

``BatchQuality.changed_on`` is the newest CHANGED_ON of the rows read: the lot, the sample,
and the tests and results on the certificate (superseded replicates included). A change
that takes a result off the certificate (its status is no longer ``A``) is not among them;
:meth:`LimsReader.changed_since` still lists the lot, since it looks at every row.

Batch numbers are data, only ever sent as bound parameters. They are also matched exactly in
Python after the database has answered: MariaDB's collations ignore case and trailing blanks,
and a certificate must not be issued for ``b2611-0001 `` because the database found
``B2611-0001``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

from pydantic import ValidationError
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    String,
    and_,
    func,
    or_,
    select,
    union_all,
)

from certificates.data import BatchQuality
from certificates.verdict import as_number
from connectors.lims.schema import analysis, lot, product, product_spec, result, sample, test
from hub.errors import MappingError, PermanentError, db_errors
from hub.store.engine import READ_ONLY

__all__ = ["AUTHORISED", "RELEASE", "LimsReader", "LotChange", "NotReleased"]

#: SAMPLE.SAMPLING_POINT of the samples a lot is released on.
RELEASE = "RELEASE"
#: STATUS of an authorised sample, test or result.
AUTHORISED = "A"
#: Sample statuses of a re-sample that does not replace its original: rejected, cancelled.
_VOID = frozenset({"R", "X"})
#: Most keys sent in one ``IN (...)`` list.
_CHUNK = 500
_TRUE, _FALSE = "T", "F"
_NAME_LENGTH = lot.c.LOT_NAME.type.length if isinstance(lot.c.LOT_NAME.type, String) else None

#: A row of any of the reader's queries, read by column name.
_Row: TypeAlias = "Row[*tuple[Any, ...]]"


class NotReleased(PermanentError):
    """The lot exists but has no certificate yet: no authorised release sample stands.

    Permanent rather than retryable because backing off cannot tell when QC will authorise
    the lot; :meth:`LimsReader.changed_since` lists the lot again when it does.
    """

    code = "not_released"

    def __init__(self, batch_number: str, reason: str) -> None:
        super().__init__(f"LIMS lot {batch_number} has no certificate yet: {reason}")
        self.batch_number = batch_number
        self.reason = reason


@dataclass(frozen=True)
class LotChange:
    """A lot whose LIMS rows changed: its newest ``CHANGED_ON`` over the lot, its release
    samples and their tests and results."""

    batch_number: str
    changed_on: dt.datetime
    #: LOT.LOT_NUMBER, the tie-breaker of :meth:`LimsReader.changed_since`'s order.
    lot_number: int


class LimsReader:
    """Reads batch quality and lot changes from the LIMS database; never writes.

    Each call reads in its own read-only transaction (on PostgreSQL a repeatable-read one, so
    the three SELECTs of a read see one snapshot). Database failures raise the hub's errors:
    DatabaseUnavailable when retrying may help, PermanentError otherwise.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def quality(self, batch_number: str) -> BatchQuality | None:
        """Batch ``batch_number``'s release (LOT.LOT_NAME, matched exactly); None when the LIMS
        has no such lot.

        Raises NotReleased when the lot has no authorised release sample that stands, and
        MappingError when its rows do not make a BatchQuality (e.g. a lot without product).
        """
        with self._reading() as conn, db_errors(f"LIMS: read lot {batch_number!r}"):
            released, waiting = _read(conn, [batch_number])
        if batch_number in waiting:
            raise NotReleased(batch_number, waiting[batch_number])
        return released.get(batch_number)

    def quality_many(self, batch_numbers: Iterable[str]) -> dict[str, BatchQuality]:
        """The releases of the batches named that have one, by batch number; lots that do not
        exist or are not released are left out (:meth:`quality` says which and why).

        Raises MappingError, naming the lot, when one lot's rows do not make a BatchQuality.
        """
        with self._reading() as conn, db_errors("LIMS: read lots"):
            released, _ = _read(conn, list(batch_numbers))
        return released

    def changed_since(
        self, after: dt.datetime, limit: int, *, after_lot: int | None = None
    ) -> list[LotChange]:
        """Lots with a LOT, release SAMPLE, TEST or RESULT row changed after ``after`` (naive
        UTC; an aware time is converted), one per lot with its newest change, ordered by
        (changed_on, lot_number), at most ``limit``.

        With ``after_lot`` the page starts after (``after``, ``after_lot``) instead, so a
        caller can page through lots that changed in the same instant: pass the last
        LotChange's changed_on and lot_number.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        moment = _naive_utc(after)
        with self._reading() as conn, db_errors("LIMS: list changed lots"):
            rows = conn.execute(_changed_lots(moment, limit, after_lot)).all()
        return [LotChange(batch_number=row.LOT_NAME, changed_on=row.changed_on,
                          lot_number=row.LOT_NUMBER) for row in rows]

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            options: dict[str, Any] = {READ_ONLY: True}
            if conn.dialect.name == "postgresql":
                options["isolation_level"] = "REPEATABLE READ"
            yield conn.execution_options(**options)


def _read(
    conn: Connection, batch_numbers: Sequence[str]
) -> tuple[dict[str, BatchQuality], dict[str, str]]:
    """(releases by batch number, reason by batch number for lots that are not released)."""
    released: dict[str, BatchQuality] = {}
    waiting: dict[str, str] = {}
    wanted = [name for name in dict.fromkeys(batch_numbers) if _could_be_lot_name(name)]
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        lots = _lots(conn, chunk)
        if not lots:
            continue
        chosen: dict[int, _Row] = {}
        for number, samples in _release_samples(conn, list(lots)).items():
            pick = _standing_sample(samples)
            if pick is not None:
                chosen[number] = pick
        lines = _result_rows(conn, [s.SAMPLE_NUMBER for s in chosen.values()])
        for number, head in lots.items():
            pick = chosen.get(number)
            if pick is None:
                waiting[head.LOT_NAME] = _why_not(head)
                continue
            released[head.LOT_NAME] = _quality(head, pick, lines.get(pick.SAMPLE_NUMBER, []))
    return released, waiting


def _could_be_lot_name(name: object) -> bool:
    """False for what cannot be a LOT_NAME (not text, too long, control characters, lone
    surrogates): no lot has it, and some drivers would fail on it instead of finding none."""
    if not isinstance(name, str) or not name or not name.isprintable():
        return False
    return _NAME_LENGTH is None or len(name) <= _NAME_LENGTH


def _lots(conn: Connection, names: Sequence[str]) -> dict[int, _Row]:
    """The lots named exactly (see the module docstring), with their product's names."""
    query = (
        select(lot, product.c.DESCRIPTION, product.c.X_DESCRIPTION_ZH)
        .select_from(lot.outerjoin(product, and_(product.c.NAME == lot.c.PRODUCT,
                                                 product.c.VERSION == lot.c.PRODUCT_VERSION)))
        .where(lot.c.LOT_NAME.in_(names))
    )
    exact = set(names)
    return {row.LOT_NUMBER: row for row in conn.execute(query) if row.LOT_NAME in exact}


def _release_samples(conn: Connection, lot_numbers: Sequence[int]) -> dict[int, list[_Row]]:
    """Every release sample of the lots, whatever its status, by lot number."""
    query = select(sample).where(sample.c.LOT.in_(lot_numbers),
                                 sample.c.SAMPLING_POINT == RELEASE)
    by_lot: dict[int, list[_Row]] = defaultdict(list)
    for row in conn.execute(query):
        by_lot[row.LOT].append(row)
    return by_lot


def _standing_sample(samples: Sequence[_Row]) -> _Row | None:
    """The newest authorised release sample that no live re-sample supersedes (see the
    module docstring); None when there is none."""
    superseded = {
        s.ORIGINAL_SAMPLE for s in samples
        if s.RE_SAMPLE == _TRUE and s.ORIGINAL_SAMPLE is not None and s.STATUS not in _VOID
    }
    standing = [s for s in samples
                if s.STATUS == AUTHORISED and s.SAMPLE_NUMBER not in superseded]
    if not standing:
        return None
    return max(standing, key=lambda s: (s.DATE_REVIEWED or dt.datetime.min, s.SAMPLE_NUMBER))


def _why_not(head: _Row) -> str:
    return f"no authorised release sample stands (lot status {head.STATUS or 'none'})"


def _result_rows(conn: Connection, sample_numbers: Sequence[int]) -> dict[int, list[_Row]]:
    """The authorised, reportable results of authorised tests of the samples, each with its
    test's stamp, its limits (when the sample's product, version and grade has any) and its
    method, by sample number. Every replicate is returned; :func:`_latest_replicates`
    keeps the last."""
    if not sample_numbers:
        return {}
    spec = and_(
        product_spec.c.PRODUCT == sample.c.PRODUCT,
        product_spec.c.VERSION == sample.c.PRODUCT_VERSION,
        product_spec.c.GRADE == sample.c.PRODUCT_GRADE,
        product_spec.c.ANALYSIS == result.c.ANALYSIS,
        product_spec.c.COMPONENT == result.c.NAME,
    )
    method = and_(analysis.c.NAME == test.c.ANALYSIS, analysis.c.VERSION == test.c.VERSION)
    query = (
        select(
            result.c.RESULT_NUMBER, result.c.SAMPLE_NUMBER, result.c.ANALYSIS, result.c.NAME,
            result.c.REPORTED_NAME, result.c.REPLICATE_COUNT, result.c.ENTRY,
            result.c.FORMATTED_ENTRY, result.c.UNITS, result.c.IN_SPEC, result.c.RESULT_TYPE,
            result.c.DATE_ENTRY, result.c.ENTERED_BY, result.c.CHANGED_ON,
            test.c.REPLICATE_COUNT.label("TEST_REPLICATE"),
            test.c.CHANGED_ON.label("TEST_CHANGED_ON"),
            product_spec.c.UNITS.label("SPEC_UNITS"), product_spec.c.MIN_VALUE,
            product_spec.c.MAX_VALUE, product_spec.c.TEXT_VALUE,
            product_spec.c.REPORTED_NAME.label("SPEC_NAME"), product_spec.c.X_REPORTED_NAME_ZH,
            product_spec.c.ORDER_NUMBER, analysis.c.X_METHOD,
        )
        .select_from(
            result.join(test, and_(test.c.TEST_NUMBER == result.c.TEST_NUMBER,
                                   test.c.SAMPLE_NUMBER == result.c.SAMPLE_NUMBER))
            .join(sample, sample.c.SAMPLE_NUMBER == result.c.SAMPLE_NUMBER)
            .outerjoin(product_spec, spec)
            .outerjoin(analysis, method)
        )
        .where(
            result.c.SAMPLE_NUMBER.in_(sample_numbers),
            test.c.STATUS == AUTHORISED,
            result.c.STATUS == AUTHORISED,
            result.c.REPORTABLE == _TRUE,
        )
        .order_by(result.c.RESULT_NUMBER)
    )
    by_sample: dict[int, list[_Row]] = defaultdict(list)
    for row in conn.execute(query):
        by_sample[row.SAMPLE_NUMBER].append(row)
    return by_sample


def _latest_replicates(rows: Sequence[_Row]) -> list[_Row]:
    """Of each (analysis, component), the row of the highest replicate."""
    latest: dict[tuple[str, str], _Row] = {}
    for row in rows:
        key = (row.ANALYSIS, row.NAME)
        if key not in latest or _replicate_rank(row) > _replicate_rank(latest[key]):
            latest[key] = row
    return list(latest.values())


def _replicate_rank(row: _Row) -> tuple[int, int, int]:
    return (row.REPLICATE_COUNT or 0, row.TEST_REPLICATE or 0, row.RESULT_NUMBER)


def _quality(head: _Row, pick: _Row, rows: Sequence[_Row]) -> BatchQuality:
    stamps = [head.CHANGED_ON, pick.CHANGED_ON]
    stamps += [stamp for row in rows for stamp in (row.CHANGED_ON, row.TEST_CHANGED_ON)]
    values = {
        "batch_number": head.LOT_NAME, "lot_number": head.LOT_NUMBER,
        "product": head.PRODUCT or pick.PRODUCT,
        "product_version": _first(head.PRODUCT_VERSION, pick.PRODUCT_VERSION),
        "grade": head.PRODUCT_GRADE or pick.PRODUCT_GRADE,
        "product_name_en": head.DESCRIPTION, "product_name_zh": head.X_DESCRIPTION_ZH,
        "manufacture_date": head.X_MANUFACTURE_DATE, "expiry_date": head.X_EXPIRY_DATE,
        "sample_number": pick.SAMPLE_NUMBER, "sample_text_id": pick.TEXT_ID,
        "sampled_at": pick.SAMPLED_DATE, "completed_at": pick.DATE_COMPLETED,
        "reviewed_at": pick.DATE_REVIEWED, "reviewer": pick.REVIEWER,
        "lims_in_spec": _flag(pick.IN_SPEC),
        "results": _lines(_latest_replicates(rows)),
        "changed_on": max((s for s in stamps if s is not None), default=None),
    }
    try:
        return BatchQuality.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors()
        )
        raise MappingError(
            f"LIMS lot {head.LOT_NAME} (sample {pick.SAMPLE_NUMBER}) cannot be read into a "
            f"certificate: {problems}") from exc


def _lines(rows: Sequence[_Row]) -> list[dict[str, Any]]:
    """Result lines in print order: by ORDER_NUMBER, then those without one (no limits).

    A line without an ORDER_NUMBER is numbered after the last one that has one, so sorting
    by ``order`` gives the same order as the tuple.
    """
    ordered = sorted(rows, key=lambda r: (r.ORDER_NUMBER is None, r.ORDER_NUMBER or 0,
                                          r.ANALYSIS or "", r.NAME or "", r.RESULT_NUMBER))
    last = max((r.ORDER_NUMBER for r in rows if r.ORDER_NUMBER is not None), default=0)
    lines: list[dict[str, Any]] = []
    extra = 0
    for row in ordered:
        if row.ORDER_NUMBER is None:
            extra += 1
        value = _first_text(row.FORMATTED_ENTRY, row.ENTRY) or ""
        numeric = row.RESULT_TYPE == "N"
        lines.append({
            "analysis": row.ANALYSIS, "component": row.NAME,
            "name_en": _first_text(row.SPEC_NAME, row.REPORTED_NAME, row.NAME),
            "name_zh": _first_text(row.X_REPORTED_NAME_ZH),
            "method": _first_text(row.X_METHOD),
            "units": _first_text(row.SPEC_UNITS, row.UNITS),
            "result_type": "N" if numeric else "T",
            "value": value,
            "numeric": as_number(value) if numeric else None,
            "min_value": _plain(row.MIN_VALUE), "max_value": _plain(row.MAX_VALUE),
            "text_value": row.TEXT_VALUE,
            "lims_in_spec": _flag(row.IN_SPEC),
            "replicate": row.REPLICATE_COUNT or 1,
            "entered_at": row.DATE_ENTRY, "entered_by": row.ENTERED_BY,
            "order": row.ORDER_NUMBER if row.ORDER_NUMBER is not None else last + extra,
        })
    return lines


def _flag(value: str | None) -> bool | None:
    """A LIMS T/F flag as a bool; None when unset or anything else."""
    return {_TRUE: True, _FALSE: False}.get((value or "").strip())


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _first_text(*values: str | None) -> str | None:
    """The first value that is not blank (CHAR columns may come back padded)."""
    return next((v.strip() for v in values if v is not None and v.strip()), None)


def _plain(value: Decimal | None) -> Decimal | None:
    """A limit without the trailing zeros of DECIMAL(18,6) and without an exponent, so that
    ``0.050000`` reads ``0.05`` and ``10.000000`` reads ``10`` on the certificate."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def _changed_lots(after: dt.datetime, limit: int, after_lot: int | None) -> Select[Any]:
    """The query behind :meth:`LimsReader.changed_since`.

    Each table contributes its rows stamped at or after ``after`` (each CHANGED_ON is
    indexed), mapped to their lot; grouping keeps each lot's newest stamp, which is its
    newest stamp overall since every older one is older than that.
    """
    release = sample.c.SAMPLING_POINT == RELEASE
    of_release = (
        (sample.c.LOT, sample.c.CHANGED_ON, sample),
        (sample.c.LOT, test.c.CHANGED_ON,
         test.join(sample, sample.c.SAMPLE_NUMBER == test.c.SAMPLE_NUMBER)),
        (sample.c.LOT, result.c.CHANGED_ON,
         result.join(sample, sample.c.SAMPLE_NUMBER == result.c.SAMPLE_NUMBER)),
    )
    lot_stamp = lot.c.CHANGED_ON
    stamps = union_all(
        select(lot.c.LOT_NUMBER.label("lot"), lot_stamp.label("changed_on"))
        .where(lot_stamp >= after),
        *(select(key, stamp).select_from(source).where(release, stamp >= after)
          for key, stamp, source in of_release),
    ).subquery("stamps")
    newest = func.max(stamps.c.changed_on)
    number = lot.c.LOT_NUMBER
    beyond = newest > after
    if after_lot is not None:
        beyond = or_(beyond, and_(newest == after, number > after_lot))
    return (
        select(number, lot.c.LOT_NAME, newest.label("changed_on"))
        .select_from(stamps.join(lot, stamps.c.lot == number))
        .group_by(number, lot.c.LOT_NAME)
        .having(beyond)
        .order_by(newest, number)
        .limit(limit)
    )

