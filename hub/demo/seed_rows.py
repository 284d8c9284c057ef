"""Turn the demo master data into the rows each reference system stores.

Pure functions of ``now``: every timestamp is derived from it (whole minutes and hours back),
so a caller that passes ``now`` knows every value, microseconds included. Quality control is
written the way LabWare records it: a release sample per lot, one test per analysis (one
more per replicate), one result per component, plus a non-reportable working result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Table

from connectors.crm import schema as crm
from connectors.erp import schema as erp
from connectors.lims import schema as lims
from hub.demo.seed_data import (
    ANALYSES,
    COMPONENT_NAMES,
    CUSTOMERS,
    ITEMS,
    LOTS,
    SPECS,
    LotPlan,
    Spec,
)

__all__ = ["TableRows", "crm_rows", "erp_rows", "in_spec", "lims_rows", "result_value"]

#: A table and the rows to put in it, in an order that satisfies foreign keys.
TableRows = tuple[Table, list[dict[str, Any]]]

SEED_USER = "demo"
_FIRST_LOT, _FIRST_SAMPLE, _FIRST_TEST, _FIRST_RESULT = 1001, 5001, 20001, 100001
_ANALYSTS = ("LWANG", "MCHEN", "JLI")
_REVIEWER = "HZHOU"
_LOT_STATUS = {"released": "A", "awaiting_review": "C", "in_progress": "P"}
_HOUR = dt.timedelta(hours=1)
_MINUTE = dt.timedelta(minutes=1)


def crm_rows(now: dt.datetime) -> list[TableRows]:
    """The CRM's accounts; each already carries its ERP customer code."""
    accounts = [
        {"account_id": c.account_id, "account_number": c.number, "name": c.name,
         "country": c.country, "email": c.email, "erp_customer_code": c.number,
         "modified_at": now, "modified_by": SEED_USER}
        for c in CUSTOMERS
    ]
    return [(crm.crm_account, accounts)]


def erp_rows(now: dt.datetime) -> list[TableRows]:
    """The ERP's business partners (linked to the CRM accounts) and batch-managed items."""
    partners = [
        {"CardCode": c.number, "CardName": c.name, "CardType": "C", "E_Mail": c.email,
         "Country": c.country, "U_CRM_ID": c.account_id, "UpdateDate": now}
        for c in CUSTOMERS
    ]
    items = [
        {"ItemCode": i.code, "ItemName": i.name, "InvntryUom": i.uom, "ManBtchNum": "Y"}
        for i in ITEMS
    ]
    return [(erp.ocrd, partners), (erp.oitm, items)]


def lims_rows(now: dt.datetime) -> list[TableRows]:
    """The LIMS's master data and the lots with their samples, tests and results."""
    products = [
        {"NAME": i.code, "VERSION": 1, "DESCRIPTION": i.name, "X_DESCRIPTION_ZH": i.name_zh}
        for i in ITEMS
    ]
    analyses = [
        {"NAME": a.name, "VERSION": 1, "DESCRIPTION": a.description, "X_METHOD": a.method}
        for a in ANALYSES
    ]
    specs = [
        {"PRODUCT": product, "VERSION": 1, "GRADE": grade, "ANALYSIS": s.analysis,
         "COMPONENT": s.component, "UNITS": s.units, "MIN_VALUE": s.min_value,
         "MAX_VALUE": s.max_value, "TEXT_VALUE": s.text_value,
         "REPORTED_NAME": COMPONENT_NAMES[s.component][0],
         "X_REPORTED_NAME_ZH": COMPONENT_NAMES[s.component][1], "ORDER_NUMBER": 10 * (n + 1)}
        for (product, grade), limits in SPECS.items()
        for n, s in enumerate(limits)
    ]
    builder = _QualityControl(now)
    for index, plan in enumerate(LOTS):
        builder.add_lot(index, plan)
    return [
        (lims.product, products), (lims.analysis, analyses), (lims.product_spec, specs),
        (lims.lot, builder.lots), (lims.sample, builder.samples), (lims.test, builder.tests),
        (lims.result, builder.results),
    ]


def result_value(spec: Spec, variation: int, override: Decimal | None = None) -> str:
    """A lot's result for ``spec`` as entered: typical + variation x step, or ``override``."""
    if spec.text_value is not None:
        return spec.text_value
    if spec.typical is None:
        raise ValueError(f"{spec.component}: a numeric spec needs a typical value")
    value = override if override is not None else spec.typical + spec.step * variation
    return format(value.quantize(spec.typical), "f")


def in_spec(spec: Spec, entry: str) -> bool:
    """Whether a result meets ``spec``: the text matches, or the number is within limits."""
    if spec.text_value is not None:
        return entry == spec.text_value
    value = Decimal(entry)
    if spec.min_value is not None and value < spec.min_value:
        return False
    return spec.max_value is None or value <= spec.max_value


def _flag(value: bool | None) -> str | None:
    return None if value is None else ("T" if value else "F")


class _QualityControl:
    """Hands out LabWare-style numbers and collects the lot, sample, test and result rows."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.lots: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.tests: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def add_lot(self, index: int, plan: LotPlan) -> None:
        made = self.now - dt.timedelta(days=plan.made_days_ago)
        number = _FIRST_LOT + index
        variation = index % 3 - 1
        first, changed = self._sample(plan, number, 1, made + 6 * _HOUR, variation,
                                      overrides=plan.failed_first, replicates=plan.replicates)
        if plan.failed_first:
            _, changed = self._sample(plan, number, 2, changed + 2 * _HOUR, variation,
                                      overrides={}, replicates={}, original=first)
        self.lots.append({
            "LOT_NUMBER": number, "LOT_NAME": plan.name, "PRODUCT": plan.product,
            "PRODUCT_VERSION": 1, "PRODUCT_GRADE": plan.grade,
            "STATUS": _LOT_STATUS[plan.state], "X_MANUFACTURE_DATE": made.date(),
            "X_EXPIRY_DATE": made.date() + dt.timedelta(days=730), "CHANGED_ON": changed,
        })

    def _sample(
        self, plan: LotPlan, lot_number: int, seq: int, sampled: dt.datetime, variation: int, *,
        overrides: Mapping[str, Decimal], replicates: Mapping[str, tuple[Decimal, ...]],
        original: int | None = None,
    ) -> tuple[int, dt.datetime]:
        """Add one release sample with its tests; returns its number and last change."""
        number = _FIRST_SAMPLE + len(self.samples)
        login = sampled + 30 * _MINUTE
        completed, reviewed = login + 20 * _HOUR, login + 23 * _HOUR
        groups: dict[str, list[Spec]] = {}
        for spec in SPECS[(plan.product, plan.grade)]:
            groups.setdefault(spec.analysis, []).append(spec)
        verdicts: list[bool | None] = []
        last_entry = login
        for position, (analysis, specs) in enumerate(groups.items()):
            entered = plan.state != "in_progress" or position < (len(groups) + 1) // 2
            reps = next((replicates[s.component] for s in specs if s.component in replicates),
                        (None,))
            verdict: bool | None = None
            for rep, rep_value in enumerate(reps, start=1):
                at = login + 3 * _HOUR + (10 * position + 30 * (rep - 1)) * _MINUTE
                values = {s.component: result_value(s, variation, rep_value if s.component
                                                    in replicates else overrides.get(s.component))
                          for s in specs}
                verdict = self._test(plan, number, analysis, specs, values, rep,
                                     login, at if entered else None, variation)
                if entered:
                    last_entry = max(last_entry, at)
            verdicts.append(verdict)
        sample_ok = None if None in verdicts else all(verdicts)
        status = _LOT_STATUS[plan.state]
        changed = {"A": reviewed, "C": completed}.get(status, last_entry)
        self.samples.append({
            "SAMPLE_NUMBER": number, "TEXT_ID": f"{plan.name}-{seq:02d}", "STATUS": status,
            "PRODUCT": plan.product, "PRODUCT_VERSION": 1, "PRODUCT_GRADE": plan.grade,
            "SAMPLING_POINT": "RELEASE", "LOT": lot_number, "IN_SPEC": _flag(sample_ok),
            "LOGIN_DATE": login, "SAMPLED_DATE": sampled,
            "DATE_COMPLETED": completed if status in "AC" else None,
            "DATE_REVIEWED": reviewed if status == "A" else None,
            "REVIEWER": _REVIEWER if status == "A" else None,
            "RE_SAMPLE": "T" if original is not None else "F", "ORIGINAL_SAMPLE": original,
            "CHANGED_ON": changed,
        })
        return number, changed

    def _test(
        self, plan: LotPlan, sample_number: int, analysis: str, specs: Sequence[Spec],
        values: Mapping[str, str], replicate: int, login: dt.datetime,
        entered_at: dt.datetime | None, variation: int,
    ) -> bool | None:
        """Add one test and its results; returns whether it is in spec (None: not done)."""
        number = _FIRST_TEST + len(self.tests)
        released = plan.state == "released"
        changed = login + 23 * _HOUR if released else (entered_at or login)
        verdicts = [in_spec(s, values[s.component]) for s in specs]
        ok = all(verdicts) if entered_at is not None else None
        analyst = _ANALYSTS[(sample_number + number) % len(_ANALYSTS)]
        rows = [(s.component, COMPONENT_NAMES[s.component][0], s.units, values[s.component], v,
                 "T", "T" if s.text_value else "N")
                for s, v in zip(specs, verdicts, strict=True)]
        if analysis == "PURITY_GC":
            # A working value the analyst records but the certificate must not show.
            rt = format(Decimal("4.37") + Decimal("0.01") * variation, "f")
            rows.append(("RT_MAIN", "Retention time, main peak", "min", rt, True, "F", "N"))
        for name, reported, units, entry, good, reportable, kind in rows:
            done = entered_at is not None
            self.results.append({
                "RESULT_NUMBER": _FIRST_RESULT + len(self.results),
                "SAMPLE_NUMBER": sample_number, "TEST_NUMBER": number, "ANALYSIS": analysis,
                "NAME": name, "REPORTED_NAME": reported, "REPLICATE_COUNT": replicate,
                "ENTRY": entry if done else None, "FORMATTED_ENTRY": entry if done else None,
                "UNITS": units, "STATUS": ("A" if released else "E") if done else "N",
                "IN_SPEC": _flag(good) if done else None, "REPORTABLE": reportable,
                "RESULT_TYPE": kind, "DATE_ENTRY": entered_at,
                "ENTERED_BY": analyst if done else None, "CHANGED_ON": changed,
            })
        self.tests.append({
            "TEST_NUMBER": number, "SAMPLE_NUMBER": sample_number, "ANALYSIS": analysis,
            "VERSION": 1, "REPLICATE_COUNT": replicate,
            "STATUS": ("A" if released else "C") if entered_at is not None else "I",
            "IN_SPEC": _flag(ok), "DATE_COMPLETED": entered_at, "CHANGED_ON": changed,
        })
        return ok
