"""A deterministic synthetic cohort: every scenario dimension, unit and date pattern.

``b12kg synth --patients N --seed S`` writes N-Triples in the patient vocabulary. The same N, seed
and evaluation date always give the same bytes. Values are drawn around the knowledge base's own
thresholds (read from the ontology), so every band is populated whatever the thresholds are; units
and codes come from the ontology's conversions and LOINC bindings.

Dimensions: stroke (coded three ways, or absent), serum B12 (each band, each unit, sometimes a
history of older results, two results of one day that may conflict, a result too old to use, or
none), homocysteine (each band or none), folate (low / normal flag, both units, or none), renal status
(CKD diagnosis, eGFR in each band, current or older than a year, or nothing recorded), neurological
record (an assessment since the stroke, present or absent; one dated before the stroke; a diagnosis of
neurological involvement; or nothing), prior B12 (none, cyanocobalamin or hydroxocobalamin injections,
oral; recent, overdue or lapsed), oral preference.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO

from b12kg import namespaces
from b12kg.engine import Workspace
from b12kg.kb import KnowledgeBase

B12 = "https://w3id.org/b12kg/ontology#"
XSD = "http://www.w3.org/2001/XMLSchema#"
RDF_TYPE = f"<{namespaces.RDF_TYPE}>"
SCT = "http://snomed.info/id/"

_PARAMETERS = """
PREFIX b12: <https://w3id.org/b12kg/ontology#>
PREFIX skos: <http://www.w3.org/2004/02/skos/core#>
SELECT ?analyte ?unit ?factor ?code ?threshold WHERE {
  { ?c b12:conversionAnalyte ?analyte ; b12:fromUnit ?unit ; b12:factor ?factor . }
  UNION { ?code b12:measures ?analyte . }
  UNION { ?t b12:thresholdAnalyte ?analyte ; b12:thresholdValue ?threshold . }
}
"""


@dataclass(frozen=True)
class AnalyteInfo:
    units: list[tuple[str, Decimal]]  #: (UCUM unit, factor to canonical)
    codes: list[str]
    thresholds: list[Decimal]

    def value_in(self, rng: random.Random) -> Decimal:
        """A canonical value near a threshold (so every band gets patients), or anywhere in range."""
        if self.thresholds and rng.random() < 0.6:
            t = rng.choice(self.thresholds)
            return (t * Decimal(str(rng.uniform(0.6, 1.4)))).quantize(Decimal("0.1"))
        top = max(self.thresholds) * 2 if self.thresholds else Decimal(100)
        return (top * Decimal(str(rng.uniform(0.05, 1.0)))).quantize(Decimal("0.1"))


def analyte_info(kb: KnowledgeBase) -> dict[str, AnalyteInfo]:
    ws = Workspace(kb)
    units: dict[str, list] = {}
    codes: dict[str, list] = {}
    thresholds: dict[str, list] = {}
    for row in ws.select_text(_PARAMETERS):
        a = row["analyte"].value.rsplit("#", 1)[-1]
        if "unit" in row:
            units.setdefault(a, []).append((row["unit"].value, Decimal(row["factor"].value)))
        if "code" in row:
            codes.setdefault(a, []).append(row["code"].value)
        if "threshold" in row:
            thresholds.setdefault(a, []).append(Decimal(row["threshold"].value))
    return {
        a: AnalyteInfo(sorted(set(units.get(a, []))), sorted(set(codes.get(a, []))), sorted(thresholds.get(a, [])))
        for a in units
    }


def _iri(value: str) -> str:
    return f"<{value}>"


def _lit(value: object, datatype: str | None = None) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"^^<{XSD}{datatype}>' if datatype else f'"{text}"'


class _Writer:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lines: list[str] = []

    def t(self, s: str, p: str, o: str) -> None:
        self.lines.append(f"{s} {p} {o} .\n")

    def flush(self) -> None:
        self.out.write("".join(self.lines))
        self.lines.clear()


def _b(local: str) -> str:
    return f"<{B12}{local}>"


def _lab(w: _Writer, rng: random.Random, patient: str, fact: str, info: AnalyteInfo, day: date,
         canonical: Decimal | None = None, interpretation: str | None = None) -> None:
    unit, factor = rng.choice(info.units)
    value = canonical if canonical is not None else info.value_in(rng)
    in_unit = (value / factor).quantize(Decimal("0.001"))
    w.t(patient, _b("hasLabResult"), fact)
    w.t(fact, RDF_TYPE, _b("LabResult"))
    # a code whose unit dimension matches is not known here; any code of the analyte is valid data
    w.t(fact, _b("code"), _iri(rng.choice(info.codes)))
    w.t(fact, _b("value"), _lit(in_unit, "decimal"))
    w.t(fact, _b("unit"), _lit(unit))
    w.t(fact, _b("effectiveDate"), _lit(day.isoformat(), "date"))
    if interpretation:
        w.t(fact, _b("interpretation"), _b(interpretation))


def write_patient(w: _Writer, rng: random.Random, base: str, i: int, as_of: date,
                  info: dict[str, AnalyteInfo], neuropathy_code: str | None = None) -> None:
    p = _iri(f"{base}p{i}")
    f = f"{base}p{i}-"
    w.t(p, RDF_TYPE, _b("Patient"))
    w.t(p, _b("birthDate"), _lit((as_of - timedelta(days=rng.randint(40 * 365, 95 * 365))).isoformat(), "date"))

    def day(max_days: int, min_days: int = 0) -> date:
        return as_of - timedelta(days=rng.randint(min_days, max_days))

    # stroke: coded as stroke, ischaemic stroke, history of stroke, or absent
    onset: date | None = None
    if rng.random() < 0.9:
        c = _iri(f + "stroke")
        onset = day(3000, 30)
        w.t(p, _b("hasCondition"), c)
        w.t(c, RDF_TYPE, _b("Condition"))
        w.t(c, _b("code"), _iri(SCT + rng.choice(["230690007", "422504002", "275526006"])))
        w.t(c, _b("onsetDate"), _lit(onset.isoformat(), "date"))
    # serum B12: none, one current result, a history, or only a stale one; sometimes two results of one
    # day that may disagree (a data conflict)
    r = rng.random()
    if r < 0.85:
        latest = day(300)
        _lab(w, rng, p, _iri(f + "b12-1"), info["serum-b12"], latest)
        if rng.random() < 0.05:
            _lab(w, rng, p, _iri(f + "b12-2"), info["serum-b12"], latest)
        if rng.random() < 0.3:
            _lab(w, rng, p, _iri(f + "b12-0"), info["serum-b12"], day(700, 320))
    elif r < 0.92:
        _lab(w, rng, p, _iri(f + "b12-0"), info["serum-b12"], day(900, 400))
    if rng.random() < 0.5:
        _lab(w, rng, p, _iri(f + "hcy"), info["homocysteine"], day(300))
    if rng.random() < 0.5:
        flag = "belowReferenceRange" if rng.random() < 0.3 else "withinReferenceRange"
        _lab(w, rng, p, _iri(f + "folate"), info["folate"], day(300), interpretation=flag)
    # renal status: a CKD diagnosis, an eGFR (sometimes older than a year), or nothing
    r = rng.random()
    if r < 0.2:
        c = _iri(f + "ckd")
        w.t(p, _b("hasCondition"), c)
        w.t(c, RDF_TYPE, _b("Condition"))
        w.t(c, _b("code"), _iri(SCT + "709044004"))
    elif r < 0.5:
        _lab(w, rng, p, _iri(f + "egfr"), info["egfr"], day(300))
    elif r < 0.6:
        _lab(w, rng, p, _iri(f + "egfr"), info["egfr"], day(800, 380))
    # neurological record: an assessment since the stroke (absent / present), one before it, a
    # diagnosis of neurological involvement, or nothing (as in most EHR exports)
    r = rng.random()
    if r < 0.75:
        n = _iri(f + "neuro")
        w.t(p, _b("hasNeurologicalAssessment"), n)
        w.t(n, RDF_TYPE, _b("NeurologicalAssessment"))
        w.t(n, _b("symptomStatus"), _b("absent" if r < 0.6 else "present"))
        since = onset if onset is not None else as_of - timedelta(days=30)
        if r < 0.05 and onset is not None:
            when = onset - timedelta(days=rng.randint(1, 400))  # before the stroke: counts neither way
        else:
            when = since + timedelta(days=rng.randint(0, max(0, (as_of - since).days)))
        w.t(n, _b("effectiveDate"), _lit(when.isoformat(), "date"))
    elif r < 0.8 and neuropathy_code:
        c = _iri(f + "neuropathy")
        w.t(p, _b("hasCondition"), c)
        w.t(c, RDF_TYPE, _b("Condition"))
        w.t(c, _b("code"), _iri(neuropathy_code))
    # B12 doses: recent, overdue, or lapsed (up to well past the treatment-lapse period)
    for k in range(rng.choice([0, 0, 1, 1, 2, 3])):
        a = _iri(f + f"dose-{k}")
        substance, route = rng.choice(
            [("cyanocobalamin", "intramuscular"), ("hydroxocobalamin", "intramuscular"),
             ("hydroxocobalamin", "intramuscular"), ("cyanocobalamin", "oral")]
        )
        w.t(p, _b("hasAdministration"), a)
        w.t(a, RDF_TYPE, _b("MedicationAdministration"))
        w.t(a, _b("substance"), _b(substance))
        w.t(a, _b("route"), _b(route))
        w.t(a, _b("doseValue"), _lit("1", "decimal"))
        w.t(a, _b("doseUnit"), _lit("mg"))
        w.t(a, _b("effectiveDate"), _lit(day(400).isoformat(), "date"))
    if rng.random() < 0.15:
        t = _iri(f + "preference")
        w.t(p, _b("hasTreatmentPreference"), t)
        w.t(t, RDF_TYPE, _b("TreatmentPreference"))
        w.t(t, _b("preferredRoute"), _b("oral"))


def _neuropathy_code(kb: KnowledgeBase) -> str | None:
    """A code of the neurological-involvement value set (read from the ontology), if it has one."""
    import pyoxigraph as ox

    rows = Workspace(kb).select("check/condition-codes", {"class": ox.NamedNode(B12 + "NeurologicalInvolvement")})
    return rows[0]["code"].value if rows else None


def generate(out: IO[str], *, patients: int, seed: int, as_of: date, kb: KnowledgeBase | None = None,
             base: str | None = None) -> int:
    """Write ``patients`` synthetic patients as N-Triples to ``out``; returns the number written."""
    kb = kb or KnowledgeBase()
    info = analyte_info(kb)
    neuropathy = _neuropathy_code(kb)
    rng = random.Random(seed)
    base = base or f"https://example.org/b12kg/synth/{seed}/"
    w = _Writer(out)
    for i in range(patients):
        write_patient(w, rng, base, i, as_of, info, neuropathy)
        if len(w.lines) > 50_000:
            w.flush()
    w.flush()
    return patients


def generate_file(path: Path, **kwargs) -> int:
    """Write the cohort to ``path`` whole, or not at all (see :func:`b12kg.inputs.replacing`)."""
    import io

    from b12kg.inputs import replacing

    with replacing(path) as raw:
        out = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
        count = generate(out, **kwargs)
        out.flush()
        out.detach()
    return count


def iter_patient_iris(patients: int, seed: int) -> Iterator[str]:
    base = f"https://example.org/b12kg/synth/{seed}/"
    return (f"{base}p{i}" for i in range(patients))
