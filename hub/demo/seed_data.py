"""The demo company's master data: a solvents manufacturer, its customers, items and specs.

Pure data, no database: :mod:`hub.demo.seed_rows` turns it into table rows. Customer ids are
UUIDs derived from the customer number, so every seed run (and every dialect) produces the
same keys and a second run can recognise what is already there.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

__all__ = [
    "ANALYSES",
    "COMPONENT_NAMES",
    "CUSTOMERS",
    "ITEMS",
    "LOTS",
    "SPECS",
    "Analysis",
    "Customer",
    "Item",
    "LotPlan",
    "Spec",
]

_NAMESPACE = uuid.UUID("6f1c2b4e-3d5a-4e8f-9a7b-1c2d3e4f5a6b")


@dataclass(frozen=True)
class Customer:
    """A customer known to both the CRM (account) and the ERP (business partner)."""

    number: str
    name: str
    country: str
    email: str

    @property
    def account_id(self) -> str:
        """The CRM's id for this customer, stable across runs."""
        return str(uuid.uuid5(_NAMESPACE, f"crm_account:{self.number}"))


@dataclass(frozen=True)
class Item:
    """A batch-managed product: an ERP item and the LIMS product of the same code."""

    code: str
    name: str
    name_zh: str
    uom: str = "kg"


@dataclass(frozen=True)
class Analysis:
    """A LIMS analysis and the published method it follows."""

    name: str
    description: str
    method: str


@dataclass(frozen=True)
class Spec:
    """One limit of a product grade, and the result a good lot usually gets for it."""

    analysis: str
    component: str
    units: str | None
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    text_value: str | None = None
    typical: Decimal | None = None
    #: Lot-to-lot variation: lot results are typical - step, typical or typical + step.
    step: Decimal = Decimal(0)


@dataclass(frozen=True)
class LotPlan:
    """A production lot and how far its quality control has got."""

    name: str
    product: str
    grade: str
    made_days_ago: int
    state: Literal["released", "awaiting_review", "in_progress"] = "released"
    #: component -> results of replicate 1, 2, ...; only the highest replicate counts.
    replicates: Mapping[str, tuple[Decimal, ...]] = field(default_factory=dict)
    #: component -> result of a first release sample that failed; a re-sample follows.
    failed_first: Mapping[str, Decimal] = field(default_factory=dict)


D = Decimal

CUSTOMERS: tuple[Customer, ...] = (
    Customer("C00042", "上海华谊精细化工有限公司", "CN", "caigou@huayi-fine.example.cn"),
    Customer("C00043", "Rheinland Lacke GmbH", "DE", "einkauf@rheinland-lacke.example.de"),
    Customer("C00051", "Nordic Coatings AB", "SE", "purchasing@nordic-coatings.example.se"),
    Customer("C00057", "Gulf Coast Formulators LLC", "US", "buyers@gcformulators.example.com"),
    Customer("C00063", "苏州恒达电子材料有限公司", "CN", "procurement@hengda-em.example.cn"),
    Customer("C00071", "Osaka Fine Chemicals K.K.", "JP", "kobai@osaka-fc.example.jp"),
    Customer("C00078", "Tintas do Sul Ltda.", "BR", "compras@tintasdosul.example.com.br"),
    Customer("C00085", "Société Lyonnaise de Peintures SA", "FR", "achats@slp.example.fr"),
    Customer("C00090", "Kalyan Pharma Pvt. Ltd.", "IN", "stores@kalyanpharma.example.in"),
)

ITEMS: tuple[Item, ...] = (
    Item("ETAC-99", "Ethyl acetate 99.9%", "乙酸乙酯"),
    Item("MEK-995", "Methyl ethyl ketone 99.5%", "丁酮"),
    Item("IPA-999", "Isopropyl alcohol 99.9%", "异丙醇"),
    Item("TOL-995", "Toluene 99.5%", "甲苯"),
    Item("XYL-MIX", "Xylene, mixed isomers", "混合二甲苯"),
    Item("NBAC-995", "n-Butyl acetate 99.5%", "乙酸正丁酯"),
    Item("ACE-995", "Acetone 99.5%", "丙酮"),
    Item("MEOH-999", "Methanol 99.9%", "甲醇"),
    Item("PGMEA-995", "Propylene glycol methyl ether acetate 99.5%", "丙二醇甲醚醋酸酯"),
    Item("BUOH-995", "n-Butanol 99.5%", "正丁醇"),
)

ANALYSES: tuple[Analysis, ...] = (
    Analysis("APPEARANCE", "Appearance, visual", "Visual, SOP QC-017"),
    Analysis("PURITY_GC", "Purity and impurities by gas chromatography", "GB/T 9722-2006"),
    Analysis("WATER_KF", "Water by Karl Fischer titration", "ASTM E203"),
    Analysis("WATER_KF_CN", "Water by Karl Fischer titration (GB)", "GB/T 6283-2008"),
    Analysis("COLOUR_APHA", "Colour, platinum-cobalt scale", "ASTM D1209"),
    Analysis("DENSITY", "Density at 20 °C, digital density meter", "ASTM D4052"),
    Analysis("RESIDUE", "Non-volatile residue on evaporation", "ISO 759"),
    Analysis("ACIDITY", "Acidity, as acetic acid", "ASTM D1613"),
)

#: component -> (reported name, Chinese reported name). Chinese text takes full-width
#: parentheses, hence the noqa marks.
COMPONENT_NAMES: Mapping[str, tuple[str, str]] = {
    "APPEARANCE": ("Appearance", "外观"),
    "PURITY": ("Purity (GC)", "纯度（气相色谱法）"),  # noqa: RUF001
    "ETHANOL": ("Ethanol", "乙醇"),
    "BENZENE": ("Benzene", "苯"),
    "BUTANOL": ("n-Butanol", "正丁醇"),
    "WATER": ("Water", "水分"),
    "COLOUR": ("Colour (Pt-Co)", "色度（铂-钴）"),  # noqa: RUF001
    "DENSITY": ("Density at 20 °C", "密度（20 °C）"),  # noqa: RUF001
    "RESIDUE": ("Non-volatile residue", "蒸发残渣"),
    "ACIDITY": ("Acidity (as acetic acid)", "酸度（以乙酸计）"),  # noqa: RUF001
}


def _text(analysis: str, component: str, value: str) -> Spec:
    return Spec(analysis, component, None, text_value=value)


def _num(analysis: str, component: str, units: str, low: str | None, high: str | None,
         typical: str, step: str = "0") -> Spec:
    return Spec(analysis, component, units,
                min_value=None if low is None else D(low),
                max_value=None if high is None else D(high),
                typical=D(typical), step=D(step))


_PCT = "% (m/m)"
_APPEARANCE = _text("APPEARANCE", "APPEARANCE", "Clear")


def _purity(low: str, typical: str, step: str = "0.02") -> Spec:
    return _num("PURITY_GC", "PURITY", _PCT, low, None, typical, step)


def _water(high: str, typical: str, step: str = "0.005", analysis: str = "WATER_KF") -> Spec:
    return _num(analysis, "WATER", _PCT, None, high, typical, step)


def _colour(high: str, typical: str = "5", step: str = "1") -> Spec:
    return _num("COLOUR_APHA", "COLOUR", "Pt-Co", None, high, typical, step)


def _density(low: str, high: str, typical: str) -> Spec:
    return _num("DENSITY", "DENSITY", "g/cm³", low, high, typical, "0.0003")


def _residue(high: str, typical: str, step: str = "0.5") -> Spec:
    return _num("RESIDUE", "RESIDUE", "mg/100 mL", None, high, typical, step)


def _acidity(high: str, typical: str) -> Spec:
    return _num("ACIDITY", "ACIDITY", _PCT, None, high, typical, "0.0005")


#: (product, grade) -> its limits, in certificate order.
SPECS: Mapping[tuple[str, str], tuple[Spec, ...]] = {
    ("ETAC-99", "STANDARD"): (
        _APPEARANCE, _purity("99.90", "99.95"),
        _num("PURITY_GC", "ETHANOL", _PCT, None, "0.05", "0.020", "0.005"),
        _water("0.05", "0.020"), _colour("10"), _density("0.897", "0.902", "0.9003"),
        _acidity("0.004", "0.0020"), _residue("5", "1.0"),
    ),
    ("MEK-995", "STANDARD"): (
        _APPEARANCE, _purity("99.50", "99.80", "0.05"), _water("0.10", "0.040", "0.01",
                                                             "WATER_KF_CN"),
        _colour("10"), _density("0.804", "0.806", "0.8051"), _acidity("0.003", "0.0010"),
    ),
    ("IPA-999", "STANDARD"): (
        _APPEARANCE, _purity("99.90", "99.95"), _water("0.10", "0.050", "0.01"),
        _colour("10"), _density("0.784", "0.786", "0.7852"), _residue("5", "1.5"),
    ),
    ("IPA-999", "ELECTRONIC"): (
        _APPEARANCE, _purity("99.990", "99.995", "0.002"), _water("0.020", "0.008", "0.002"),
        _colour("5", "3"), _residue("1", "0.3", "0.1"),
    ),
    ("TOL-995", "STANDARD"): (
        _APPEARANCE, _purity("99.50", "99.85", "0.05"),
        _num("PURITY_GC", "BENZENE", _PCT, None, "0.010", "0.003", "0.001"),
        _water("0.030", "0.015", "0.003"), _colour("10"), _density("0.865", "0.869", "0.8670"),
    ),
    ("XYL-MIX", "STANDARD"): (
        _APPEARANCE, _purity("98.50", "99.20", "0.10"), _water("0.05", "0.020"),
        _colour("20", "10", "2"), _density("0.860", "0.870", "0.8645"),
    ),
    ("NBAC-995", "STANDARD"): (
        _APPEARANCE, _purity("99.50", "99.75", "0.05"),
        _num("PURITY_GC", "BUTANOL", _PCT, None, "0.20", "0.08", "0.02"),
        _water("0.05", "0.025"), _colour("10"), _density("0.878", "0.883", "0.8808"),
        _acidity("0.010", "0.0040"),
    ),
    ("ACE-995", "STANDARD"): (
        _APPEARANCE, _purity("99.50", "99.80", "0.05"),
        _water("0.30", "0.15", "0.03", "WATER_KF_CN"), _colour("10"),
        _density("0.789", "0.792", "0.7905"), _residue("5", "1.0"), _acidity("0.002", "0.0008"),
    ),
    ("MEOH-999", "STANDARD"): (
        _APPEARANCE, _purity("99.90", "99.96"), _water("0.10", "0.040", "0.01"),
        _colour("5", "3"), _density("0.791", "0.793", "0.7918"), _acidity("0.003", "0.0010"),
    ),
    ("PGMEA-995", "STANDARD"): (
        _APPEARANCE, _purity("99.50", "99.70", "0.05"), _water("0.05", "0.020"),
        _colour("10"), _acidity("0.010", "0.0030"),
    ),
    ("BUOH-995", "STANDARD"): (
        _APPEARANCE, _purity("99.50", "99.80", "0.05"), _water("0.10", "0.040", "0.01"),
        _colour("10"), _density("0.809", "0.811", "0.8100"),
    ),
}

LOTS: tuple[LotPlan, ...] = (
    LotPlan("B2611-0001", "ETAC-99", "STANDARD", 40),
    # The first water result was out of limit; the retest (replicate 2) is what counts.
    LotPlan("B2611-0002", "ETAC-99", "STANDARD", 33, replicates={"WATER": (D("0.061"),
                                                                           D("0.032"))}),
    LotPlan("B2611-0003", "MEK-995", "STANDARD", 30),
    LotPlan("B2611-0004", "IPA-999", "ELECTRONIC", 27),
    LotPlan("B2611-0005", "IPA-999", "STANDARD", 25, replicates={"WATER": (D("0.048"),
                                                                           D("0.045"))}),
    # The release sample failed on water; the authorised re-sample supersedes it.
    LotPlan("B2611-0006", "TOL-995", "STANDARD", 21, failed_first={"WATER": D("0.041")}),
    LotPlan("B2611-0007", "NBAC-995", "STANDARD", 18),
    LotPlan("B2611-0008", "ACE-995", "STANDARD", 14),
    LotPlan("B2611-0009", "MEOH-999", "STANDARD", 11),
    LotPlan("B2611-0010", "XYL-MIX", "STANDARD", 8),
    LotPlan("B2611-0011", "PGMEA-995", "STANDARD", 1, state="in_progress"),
    LotPlan("B2611-0012", "ETAC-99", "STANDARD", 2, state="awaiting_review"),
)
