"""The hub's own judgement of each result against its limits, and where it differs from the LIMS.

The LIMS flags every result in or out of spec (``RESULT.IN_SPEC``), but a certificate states
values *and* limits side by side, so what the customer reads must be consistent with what it
prints: the hub judges each printed value against the printed limits again and refuses to
issue a certificate where its verdict and the LIMS's flag disagree (:func:`disagreements`).
A mismatch means a result was edited after it was judged, a limit changed under an
authorised sample, or the LIMS judged a different value than the one reported.

Rules (the product spec): a number is judged inclusive of its limits; a text result matches
its expected text ignoring case and surrounding blanks; a result without limits is "n/a".
A value that should be a number but is not one cannot be shown to be within limits, so it
fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from certificates.data import BatchQuality, ResultLine, Verdict

__all__ = ["as_number", "disagreements", "limits_text", "overall", "verdict"]


def as_number(text: str | None) -> Decimal | None:
    """``text`` as a finite Decimal, or None when it is not one ("", "n.d.", "NaN", "<0.1")."""
    if text is None:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def verdict(line: ResultLine) -> Verdict:
    """The verdict on one result, judged on its reported value: "n/a" when it has no limits."""
    if line.text_value is not None:
        matches = line.value.strip().casefold() == line.text_value.strip().casefold()
        return "pass" if matches else "fail"
    if line.min_value is None and line.max_value is None:
        return "n/a"
    number = line.numeric if line.numeric is not None else as_number(line.value)
    if number is None:
        return "fail"
    if line.min_value is not None and number < line.min_value:
        return "fail"
    if line.max_value is not None and number > line.max_value:
        return "fail"
    return "pass"


def overall(lines: Iterable[ResultLine]) -> Verdict:
    """All results together: "fail" when any fails, else "pass" when any passes, else "n/a"."""
    verdicts = {verdict(line) for line in lines}
    if "fail" in verdicts:
        return "fail"
    return "pass" if "pass" in verdicts else "n/a"


def limits_text(line: ResultLine) -> str:
    """The limits of ``line`` in words: "'Clear'", "min 99.9", "max 0.05", "0.897 to 0.902"."""
    if line.text_value is not None:
        return repr(line.text_value)
    low, high = line.min_value, line.max_value
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"min {low}"
    if high is not None:
        return f"max {high}"
    return "no limits"


def disagreements(quality: BatchQuality) -> list[str]:
    """Why the hub's verdicts disagree with the LIMS's IN_SPEC flags; empty when they agree.

    A result the hub can judge ("pass"/"fail") disagrees when the LIMS flags it the other way
    or not at all (an authorised result with limits but no flag is not something to certify).
    Results without limits are not compared. The sample's own flag is checked against the
    overall verdict the same way, and a sample without any result has nothing to certify.
    """
    if not quality.results:
        return [f"sample {quality.sample_number} ({quality.sample_text_id}) has no authorised "
                "reportable results to certify"]
    reasons: list[str] = []
    for line in quality.results:
        mine = verdict(line)
        if mine == "n/a" or line.lims_in_spec == (mine == "pass"):
            continue
        units = f" {line.units}" if line.units else ""
        judged = "within" if mine == "pass" else "outside"
        reasons.append(
            f"{line.name_en} ({line.analysis}/{line.component}, replicate {line.replicate}): "
            f"{line.value!r}{units} is {judged} {limits_text(line)}, but the LIMS "
            f"{_lims_flag(line.lims_in_spec)}"
        )
    total = overall(quality.results)
    if total != "n/a" and quality.lims_in_spec != (total == "pass"):
        reasons.append(
            f"sample {quality.sample_number} ({quality.sample_text_id}): the results "
            f"{'pass' if total == 'pass' else 'fail'} overall, but the LIMS "
            f"{_lims_flag(quality.lims_in_spec)}"
        )
    return reasons


def _lims_flag(flag: bool | None) -> str:
    if flag is None:
        return "gives no in-spec flag"
    return "has it in spec" if flag else "has it out of spec"
