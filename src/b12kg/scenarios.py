"""Patient scenarios: every combination of the patient states the guideline distinguishes.

The dimensions and their values are read from the knowledge base: the bands of each analyte come
from the band classes and their thresholds (a sample value is chosen inside each band), the codes
from the terminology module, result ages from the result-currency policy. No guideline number is
written here, so a changed threshold changes the scenarios with it.

:func:`build_patient` turns one scenario into patient RDF in the same vocabulary as
``examples/patients/seed-case.ttl``; :func:`evaluate` runs the real pipeline (normalise, classify,
derive, schedule from :mod:`b12kg.derive`) over many scenarios at once in one workspace.

>>> from b12kg.kb import KnowledgeBase
>>> from datetime import date
>>> space = ScenarioSpace.from_kb(KnowledgeBase(), as_of=date(2025, 10, 31))
>>> [d.name for d in space.dimensions][:3]
['b12', 'homocysteine', 'renal']
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

import pyoxigraph as ox

from b12kg import namespaces
from b12kg import dates
from b12kg.derive import evaluate as evaluate_workspace
from b12kg.derive import oldest_counted
from b12kg.engine import Workspace
from b12kg.errors import KnowledgeBaseError
from b12kg.kb import KnowledgeBase

__all__ = [
    "Band",
    "Decision",
    "Dimension",
    "Fact",
    "Level",
    "Scenario",
    "ScenarioSpace",
    "bands",
    "build_patient",
    "common_values",
    "cut_points",
    "decisions_from_rows",
    "evaluate",
]

B12 = "https://w3id.org/b12kg/ontology#"
RDF_TYPE = ox.NamedNode(namespaces.RDF_TYPE)
XSD = "http://www.w3.org/2001/XMLSchema#"
XSD_DATE = ox.NamedNode(XSD + "date")
NOT_RECORDED = "not recorded"
STROKE_AGE_DAYS = 30  #: how long before the evaluation date a scenario's stroke happened (any age works)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _b12(local: str) -> ox.NamedNode:
    return ox.NamedNode(B12 + local)


def _local(iri: str) -> str:
    return iri.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


# ------------------------------------------------------------------------------------ bands
@dataclass(frozen=True)
class Band:
    """A band class: canonical values in [lower, upper) of one analyte (None = open end)."""

    iri: str
    analyte: str
    base: str | None
    lower: str | None  #: threshold IRI
    lower_value: Decimal | None
    upper: str | None
    upper_value: Decimal | None
    unit: str | None  #: the analyte's canonical unit
    lower_unit: str | None = None  #: the unit the lower threshold is stated in
    upper_unit: str | None = None

    @property
    def name(self) -> str:
        return _local(self.iri)

    def sample(self) -> Decimal:
        """A value inside the band, computed from its thresholds only."""
        lo, hi = self.lower_value, self.upper_value
        if lo is not None and hi is not None:
            return (lo + hi) / 2
        if lo is not None:
            return lo * 2 if lo > 0 else lo + 1
        if hi is not None:
            return hi / 2 if hi > 0 else hi - 1
        return Decimal(1)


def bands(ws: Workspace) -> dict[str, list[Band]]:
    """The band classes of each analyte (analyte IRI -> bands sorted by lower bound, open first)."""
    out: dict[str, list[Band]] = defaultdict(list)
    for row in ws.select("check/bands"):
        def value(key: str) -> Decimal | None:
            return Decimal(row[key].value) if key in row else None

        out[row["analyte"].value].append(
            Band(
                iri=row["band"].value,
                analyte=row["analyte"].value,
                base=row["base"].value if "base" in row else None,
                lower=row["lower"].value if "lower" in row else None,
                lower_value=value("lowerValue"),
                upper=row["upper"].value if "upper" in row else None,
                upper_value=value("upperValue"),
                unit=row["canonicalUnit"].value if "canonicalUnit" in row else None,
                lower_unit=row["lowerUnit"].value if "lowerUnit" in row else None,
                upper_unit=row["upperUnit"].value if "upperUnit" in row else None,
            )
        )
    for items in out.values():
        items.sort(key=lambda b: (b.lower_value is not None, b.lower_value or 0, b.iri))
    return dict(out)


# ------------------------------------------------------------------------------------ facts
@dataclass(frozen=True)
class Fact:
    """One clinical fact of a scenario, in the patient vocabulary."""

    kind: str  #: "lab", "condition", "administration", "neuro", "preference"
    key: str  #: a short local name for the fact's IRI
    properties: tuple[tuple[str, object], ...] = ()  #: (b12 property local name, value)
    age_days: int = 0  #: how many days before the evaluation date it was recorded
    types: tuple[str, ...] = ()  #: extra classes (IRIs) of the fact node


@dataclass(frozen=True)
class Level:
    """One value of a dimension, with the facts a patient in that state has."""

    name: str
    facts: tuple[Fact, ...] = ()


@dataclass(frozen=True)
class Dimension:
    name: str
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class Scenario:
    id: str
    levels: tuple[tuple[str, Level], ...]  #: (dimension name, level), in dimension order

    def values(self) -> dict[str, str]:
        return {dim: level.name for dim, level in self.levels}



_LINK = {
    "lab": "hasLabResult",
    "condition": "hasCondition",
    "administration": "hasAdministration",
    "neuro": "hasNeurologicalAssessment",
    "preference": "hasTreatmentPreference",
}
_CLASS = {
    "lab": "LabResult",
    "condition": "Condition",
    "administration": "MedicationAdministration",
    "neuro": "NeurologicalAssessment",
    "preference": "TreatmentPreference",
}
_DATED = {"lab": "effectiveDate", "condition": "onsetDate", "administration": "effectiveDate", "neuro": "effectiveDate"}


def _term(value: object) -> ox.NamedNode | ox.Literal:
    if isinstance(value, (ox.NamedNode, ox.Literal)):
        return value
    if isinstance(value, Decimal):
        return ox.Literal(str(value), datatype=ox.NamedNode(XSD + "decimal"))
    if isinstance(value, str):
        return ox.Literal(value)
    raise TypeError(f"cannot use {value!r} as a fact value")


def build_patient(
    iri_base: str, scenario: Scenario, as_of: date, *, shared_facts: bool = False
) -> list[ox.Triple]:
    """The patient RDF of one scenario: ``<iri_base><scenario.id>`` with one node per fact.

    Stroke is recorded as a coded condition, results with code (or analyte), value, UCUM unit and
    date, as in ``examples/patients/seed-case.ttl``. With ``shared_facts`` a fact node is named after
    its dimension level (``<iri_base>fact-<dimension>-<level>-<key>``), so patients of one batch
    that share a level share the node: each patient's data is unchanged, the store is smaller.
    """
    patient = ox.NamedNode(iri_base + scenario.id)
    triples = [ox.Triple(patient, RDF_TYPE, _b12("Patient"))]
    for dim, level in scenario.levels:
        for fact in level.facts:
            if shared_facts:
                node = ox.NamedNode(f"{iri_base}fact-{dim}-{_slug(level.name)}-{fact.key}")
            else:
                node = ox.NamedNode(f"{iri_base}{scenario.id}-{fact.key}")
            triples.append(ox.Triple(patient, _b12(_LINK[fact.kind]), node))
            triples.append(ox.Triple(node, RDF_TYPE, _b12(_CLASS[fact.kind])))
            for cls in fact.types:
                triples.append(ox.Triple(node, RDF_TYPE, ox.NamedNode(cls)))
            for prop, value in fact.properties:
                triples.append(ox.Triple(node, _b12(prop), _term(value)))
            if fact.kind in _DATED:
                day = ox.Literal((as_of - timedelta(days=fact.age_days)).isoformat(), datatype=XSD_DATE)
                triples.append(ox.Triple(node, _b12(_DATED[fact.kind]), day))
    return triples


# ------------------------------------------------------------------------------------ the space
@dataclass
class ScenarioSpace:
    """The dimensions of the patient state, read from one knowledge base."""

    dimensions: list[Dimension]
    bands: dict[str, list[Band]] = field(default_factory=dict)

    @classmethod
    def from_kb(cls, kb: KnowledgeBase, *, as_of: date,
                cuts: Mapping[str, Iterable[Decimal]] | None = None) -> ScenarioSpace:
        """The dimensions, with fact ages for evaluation at ``as_of`` (calendar arithmetic makes the
        ages of 'older than the policy' facts depend on the date).

        ``cuts`` (analyte IRI -> values) splits the bands at further values, one level per piece: a
        comparison of two knowledge bases passes the thresholds of both, so a value between an old
        and a new threshold is sampled."""
        ws = Workspace(kb)
        all_bands = bands(ws)
        extra_cuts = {a: sorted(set(v)) for a, v in (cuts or {}).items()}
        stale_days = _days_before(ws, "ResultCurrencyPolicy", as_of) + 1
        lapsed_days = _days_before(ws, "TreatmentLapsePolicy", as_of) + 1

        def lab(analyte: str, key: str, value: Decimal, age: int = 0, interpretation: str | None = None) -> Fact:
            code, unit = _analyte_code(ws, analyte)
            props: list[tuple[str, object]] = [("code", ox.NamedNode(code)) if code else ("analyte", ox.NamedNode(analyte))]
            props += [("value", value), ("unit", unit)]
            if interpretation:
                props.append(("interpretation", _b12(interpretation)))
            return Fact("lab", key, tuple(props), age)

        def band_levels(analyte_local: str, key: str) -> list[Level]:
            analyte = B12 + analyte_local
            found = all_bands.get(analyte)
            if not found:
                raise KnowledgeBaseError(f"no band classes with b12:bandOf b12:{analyte_local} in the ontology")
            levels = []
            for band in found:
                inner = [c for c in extra_cuts.get(analyte, ())
                         if (band.lower_value is None or c > band.lower_value)
                         and (band.upper_value is None or c < band.upper_value)]
                if not inner:
                    levels.append(Level(band.name, (lab(analyte, key, band.sample()),)))
                    continue
                bounds = [band.lower_value, *inner, band.upper_value]
                for lo, hi in zip(bounds, bounds[1:]):
                    value = replace(band, lower_value=lo, upper_value=hi).sample()
                    shown = format(value.normalize(), "f")
                    levels.append(Level(f"{band.name} at {shown} {band.unit or ''}".rstrip(),
                                        (lab(analyte, key, value),)))
            return levels

        b12_levels = band_levels("serum-b12", "b12")
        lowest, highest = b12_levels[0].facts[0], b12_levels[-1].facts[0]
        b12_levels += [
            Level(NOT_RECORDED),
            Level("older than the result-currency policy", (Fact("lab", "b12", lowest.properties, stale_days),)),
            Level("conflicting results on one day", (lowest, Fact("lab", "b12-other", highest.properties))),
        ]
        hcy_levels = band_levels("homocysteine", "homocysteine") + [Level(NOT_RECORDED)]
        egfr_levels = band_levels("egfr", "egfr")
        renal_levels = [
            Level("renal impairment diagnosis", (_condition(ws, "RenalImpairment", "renal"),)),
            *egfr_levels,
            *(Level(f"{level.name} older than the result-currency policy",
                    (Fact("lab", "egfr", level.facts[0].properties, stale_days),)) for level in egfr_levels),
            Level(NOT_RECORDED),
        ]
        stroke = _condition(ws, "Stroke", "stroke", age=STROKE_AGE_DAYS)
        neuro_levels = [
            Level(f"{status} since the stroke", (Fact("neuro", "neuro", (("symptomStatus", _b12(status)),)),))
            for status in ("present", "absent")
        ] + [
            Level("absent before the stroke", (Fact("neuro", "neuro", (("symptomStatus", _b12("absent")),),
                                                   STROKE_AGE_DAYS + 1),)),
            Level("neurological involvement diagnosis", (_condition(ws, "NeurologicalInvolvement", "neuro"),)),
            Level(NOT_RECORDED),
        ]
        dose = ws.select("check/route-dose", {"route": _b12("intramuscular")})
        if not dose:
            raise KnowledgeBaseError("no regimen by the intramuscular route in the ontology")
        dose_props = (("doseValue", Decimal(dose[0]["doseValue"].value)), ("doseUnit", dose[0]["doseUnit"].value))
        interval_days = (as_of - dates.subtract(as_of, Decimal(dose[0]["intervalMax"].value),
                                                dose[0]["intervalUnit"].value)).days

        def given(substance: str, route: str, age: int) -> tuple[Fact, ...]:
            return (Fact("administration", "dose", (("substance", _b12(substance)), *dose_props,
                                                    ("route", _b12(route))), age),)

        treatment_levels = [
            Level("none"),
            Level("cyanocobalamin IM, recent", given("cyanocobalamin", "intramuscular", 0)),
            Level("hydroxocobalamin IM, recent", given("hydroxocobalamin", "intramuscular", 0)),
            Level("hydroxocobalamin IM, next dose overdue",
                  given("hydroxocobalamin", "intramuscular", (interval_days + lapsed_days) // 2)),
            Level("cyanocobalamin IM, lapsed", given("cyanocobalamin", "intramuscular", lapsed_days)),
            Level("oral cyanocobalamin only, recent", given("cyanocobalamin", "oral", 0)),
        ]
        oral_levels = [
            Level("prefers oral", (Fact("preference", "preference", (("preferredRoute", _b12("oral")),)),)),
            Level(NOT_RECORDED),
        ]
        folate = B12 + "folate"
        folate_levels = [
            Level(f"flagged {flag}", (lab(folate, "folate", Decimal(1), interpretation=flag),))
            for flag in ("belowReferenceRange", "withinReferenceRange")
        ] + [Level(NOT_RECORDED)]
        stroke_levels = [Level("stroke", (stroke,)), Level("no stroke")]
        dims = [
            Dimension("b12", tuple(b12_levels)),
            Dimension("homocysteine", tuple(hcy_levels)),
            Dimension("renal", tuple(renal_levels)),
            Dimension("neuro", tuple(neuro_levels)),
            Dimension("treatment", tuple(treatment_levels)),
            Dimension("oral_preference", tuple(oral_levels)),
            Dimension("folate", tuple(folate_levels)),
            Dimension("stroke", tuple(stroke_levels)),
        ]
        return cls(dimensions=dims, bands=all_bands)

    def union(self, other: ScenarioSpace, label: str) -> ScenarioSpace:
        """This space with the levels of ``other`` that hold other facts added to each dimension (a
        level whose name is taken gets `` (per LABEL)``): the scenarios of two knowledge bases."""
        theirs = {d.name: d for d in other.dimensions}
        if set(theirs) != {d.name for d in self.dimensions}:
            raise KnowledgeBaseError("the two knowledge bases give different scenario dimensions: "
                                     f"{sorted(d.name for d in self.dimensions)} and {sorted(theirs)}")
        dims = []
        for dim in self.dimensions:
            levels = list(dim.levels)
            seen = {level.facts for level in levels}
            names = {level.name for level in levels}
            for level in theirs[dim.name].levels:
                if level.facts in seen:
                    continue
                name = level.name if level.name not in names else f"{level.name} (per {label})"
                levels.append(Level(name, level.facts))
                seen.add(level.facts)
                names.add(name)
            dims.append(Dimension(dim.name, tuple(levels)))
        merged = dict(other.bands)
        merged.update(self.bands)
        return ScenarioSpace(dimensions=dims, bands=merged)

    def __len__(self) -> int:
        return math.prod(len(d.levels) for d in self.dimensions)

    def scenarios(self) -> Iterator[Scenario]:
        """Every combination, in a stable order, with ids ``s0001``, ``s0002``…"""
        width = max(4, len(str(len(self))))
        names = [d.name for d in self.dimensions]
        for number, combo in enumerate(itertools.product(*(d.levels for d in self.dimensions)), start=1):
            yield Scenario(id=f"s{number:0{width}d}", levels=tuple(zip(names, combo)))


def common_values(values: list[dict[str, str]]) -> str:
    """``dim=level, …`` for the dimension levels every one of ``values`` (scenario values) shares."""
    if not values:
        return ""
    same = {k: v for k, v in values[0].items() if all(other.get(k) == v for other in values)}
    return ", ".join(f"{k}={v}" for k, v in same.items())


def cut_points(kb: KnowledgeBase) -> dict[str, set[Decimal]]:
    """The band bounds of each analyte (analyte IRI -> threshold values)."""
    out: dict[str, set[Decimal]] = defaultdict(set)
    for analyte, items in bands(Workspace(kb)).items():
        for band in items:
            out[analyte].update(v for v in (band.lower_value, band.upper_value) if v is not None)
    return dict(out)


def _days_before(ws: Workspace, policy: str, as_of: date) -> int:
    """How many days before ``as_of`` the age policy ``b12:{policy}`` reaches (calendar arithmetic)."""
    return (as_of - oldest_counted(ws, policy, as_of)).days


def _analyte_code(ws: Workspace, analyte: str) -> tuple[str | None, str]:
    rows = ws.select("check/analyte-codes", {"analyte": ox.NamedNode(analyte)})
    if not rows:
        raise KnowledgeBaseError(f"analyte <{analyte}> has no canonical unit")
    code = rows[0].get("code")
    return (code.value if code is not None else None), rows[0]["canonicalUnit"].value


def _condition(ws: Workspace, class_local: str, key: str, age: int = 0) -> Fact:
    rows = ws.select("check/condition-codes", {"class": _b12(class_local)})
    if rows:
        return Fact("condition", key, (("code", rows[0]["code"]),), age)
    return Fact("condition", key, (), age, types=(B12 + class_local,))  # no coded value set: the class itself


# ------------------------------------------------------------------------------------ evaluation
@dataclass
class Decision:
    """What the derivation decided for one scenario."""

    scenario: Scenario
    in_scope: bool = False
    selected: list[str] = field(default_factory=list)  #: regimen IRIs
    alternatives: list[str] = field(default_factory=list)
    products: dict[str, set[str]] = field(default_factory=dict)  #: regimen IRI -> products that may satisfy it
    not_covered: list[str] = field(default_factory=list)  #: scope exclusion IRIs
    contraindicated: dict[str, list[str]] = field(default_factory=dict)  #: product -> contraindications
    possibly_contraindicated: dict[str, list[str]] = field(default_factory=dict)  #: product -> contraindications
    missing: list[str] = field(default_factory=list)  #: missing-data rule IRIs
    assumed: list[str] = field(default_factory=list)  #: assumption IRIs
    recommended: dict[str, str] = field(default_factory=dict)  #: statement or action -> status IRI
    unworded: list[str] = field(default_factory=list)  #: case-specific statements with no applicable rendering
    no_switch_target: list[str] = field(default_factory=list)  #: switching actions with nothing to switch to

    @property
    def is_gap(self) -> bool:
        """Neither a maintenance decision (in scope, a selected regimen) nor a not-covered reason."""
        return not (self.in_scope and self.selected) and not self.not_covered

    @property
    def contraindicated_selected(self) -> list[tuple[str, str]]:
        """(regimen, product) pairs where a selected or alternative regimen may be satisfied by a product
        that is contraindicated, or possibly contraindicated, for the patient."""
        forbidden = set(self.contraindicated) | set(self.possibly_contraindicated)
        return [(r, p) for r in self.selected + self.alternatives for p in sorted(self.products.get(r, set()))
                if p in forbidden]


SCENARIO_IRI_BASE = "urn:b12kg:scenario:"


def evaluate(
    kb: KnowledgeBase,
    scenarios: Iterable[Scenario],
    *,
    as_of: date,
    batch_size: int = 2000,
    workers: int = 1,
    reader: str | None = None,
) -> list[Decision]:
    """Run the real pipeline over the scenarios, ``batch_size`` patients per workspace, the batches
    spread over ``workers`` processes (results in scenario order either way).

    ``reader``: the text of the query that reads the decisions (default: the knowledge base's own
    ``check/scenario-decisions``); a comparison of two knowledge bases reads both with one query."""
    items = list(scenarios)
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if workers > 1 and len(batches) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_evaluate_batch, [kb] * len(batches), batches, [as_of] * len(batches),
                                    [reader] * len(batches)))
    else:
        results = [_evaluate_batch(kb, batch, as_of, reader) for batch in batches]
    return [decision for result in results for decision in result]


def _evaluate_batch(kb: KnowledgeBase, batch: list[Scenario], as_of: date, reader: str | None = None,
                    shared_facts: bool = True) -> list[Decision]:
    ws = Workspace(kb)
    triples: list[ox.Triple] = []
    for scenario in batch:
        triples += build_patient(SCENARIO_IRI_BASE, scenario, as_of, shared_facts=shared_facts)
    ws.add_triples("patients", triples)
    evaluate_workspace(ws, as_of, expanded=False)  # the decisions need no expanded provenance
    by_iri = {SCENARIO_IRI_BASE + s.id: Decision(scenario=s) for s in batch}
    rows = ws.select_text(reader) if reader else ws.select("check/scenario-decisions")
    return decisions_from_rows(rows, by_iri)


def decisions_from_rows(rows: Iterable[dict], by_iri: dict[str, Decision]) -> list[Decision]:
    """Fill the decisions (patient IRI -> Decision) from the rows of ``check/scenario-decisions``."""
    for row in rows:
        decision = by_iri.get(row["patient"].value)
        if decision is None:
            continue
        kind = row["kind"].value
        item = row["item"].value if "item" in row else None
        if kind == "in-scope":
            decision.in_scope = True
        elif kind == "regimen" and item:
            status = _local(row["status"].value)
            target = decision.selected if status == "selected" else decision.alternatives
            if item not in target:
                target.append(item)
            decision.products.setdefault(item, set())
            if "product" in row:
                decision.products[item].add(row["product"].value)
        elif kind == "not-covered" and item:
            decision.not_covered.append(item)
        elif kind == "contraindicated" and item:
            decision.contraindicated.setdefault(item, []).append(row["source"].value)
        elif kind == "possibly-contraindicated" and item:
            decision.possibly_contraindicated.setdefault(item, []).append(row["source"].value)
        elif kind == "recommended" and item:
            decision.recommended[item] = row["status"].value
        elif kind in ("missing", "assumed", "unworded", "no-switch-target") and item:
            getattr(decision, kind.replace("-", "_")).append(item)
    out = list(by_iri.values())
    for d in out:
        d.selected.sort()
        d.alternatives.sort()
        d.not_covered.sort()
        d.missing.sort()
        d.assumed.sort()
    return out


# ------------------------------------------------------------------------------------ covering sets
def covering(space: ScenarioSpace, strength: int = 4, *, seed: int = 12) -> list[Scenario]:
    """Scenarios in which every combination of values of any ``strength`` dimensions occurs at least
    once (a greedy covering array, AETG style; deterministic for a given seed).

    With ``strength`` equal to the number of dimensions this is the full cross product.
    """
    import random

    dims = space.dimensions
    sizes = [len(d.levels) for d in dims]
    k = len(dims)
    if strength >= k:
        return list(space.scenarios())
    combos = list(itertools.combinations(range(k), strength))
    uncovered = {(c, vals) for c in combos for vals in itertools.product(*(range(sizes[i]) for i in c))}
    by_dim = {i: [c for c in combos if i in c] for i in range(k)}
    rng = random.Random(seed)
    rows: list[tuple[int, ...]] = []
    while uncovered:
        best_row, best_gain = None, -1
        for _ in range(3):
            order = list(range(k))
            rng.shuffle(order)
            row: dict[int, int] = {}
            for dim in order:
                best_level, best_count = 0, -1
                for level in rng.sample(range(sizes[dim]), sizes[dim]):
                    row[dim] = level
                    count = sum(
                        1
                        for c in by_dim[dim]
                        if all(i in row for i in c) and (c, tuple(row[i] for i in c)) in uncovered
                    )
                    if count > best_count:
                        best_level, best_count = level, count
                row[dim] = best_level
            full = tuple(row[i] for i in range(k))
            gain = sum(1 for c in combos if (c, tuple(full[i] for i in c)) in uncovered)
            if gain > best_gain:
                best_row, best_gain = full, gain
        if best_row is None or best_gain == 0:  # the greedy rows add nothing: take an uncovered tuple as is
            combo, vals = min(uncovered)
            fixed = dict(zip(combo, vals))
            best_row = tuple(fixed.get(i, 0) for i in range(k))
        rows.append(best_row)
        uncovered -= {(c, tuple(best_row[i] for i in c)) for c in combos}
    index = {combo: n for n, combo in enumerate(itertools.product(*(range(s) for s in sizes)), start=1)}
    width = max(4, len(str(len(space))))
    names = [d.name for d in dims]
    out = []
    for row in sorted(rows, key=lambda r: index[r]):
        levels = tuple((names[i], dims[i].levels[row[i]]) for i in range(k))
        out.append(Scenario(id=f"s{index[row]:0{width}d}", levels=levels))
    return out
