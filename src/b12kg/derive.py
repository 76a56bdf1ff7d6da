"""The pipeline for patient files: read -> validate -> normalise -> classify -> derive -> schedule.

Data flows one way. Every step except date arithmetic is a SPARQL query from ``queries/``; the
numbers it uses (factors, thresholds, intervals, result age) are read from the ontology.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pyoxigraph as ox

from b12kg._version import ENGINE_VERSION
from b12kg.engine import Workspace
from b12kg.errors import InvalidPatientData, KnowledgeBaseError
from b12kg.kb import KnowledgeBase
from b12kg.patient import PatientData, load_patient
from b12kg.reason import Reasoner, classify
from b12kg.validate import validate_shapes, validate_values

B12 = "https://w3id.org/b12kg/ontology#"
PROV = "http://www.w3.org/ns/prov#"
XSD_DATE = ox.NamedNode("http://www.w3.org/2001/XMLSchema#date")


@dataclass
class Evaluation:
    """The result of evaluating one patient file at one date: the workspace with every graph."""

    workspace: Workspace
    source: PatientData
    as_of: date
    reasoner: Reasoner

    @property
    def patients(self) -> list[str]:
        rows = self.workspace.select_text(
            "PREFIX b12: <https://w3id.org/b12kg/ontology#> "
            "SELECT DISTINCT ?p WHERE { GRAPH <urn:b12kg:graph:patients> { ?p a b12:Patient } } ORDER BY ?p"
        )
        return [r["p"].value for r in rows]


def recommend(
    patient: str | Path | PatientData,
    *,
    as_of: date,
    reasoner: Reasoner = Reasoner.rules,
    kb: KnowledgeBase | None = None,
) -> Evaluation:
    """Evaluate a patient file against the guideline at ``as_of``.

    Raises :class:`~b12kg.errors.InputError` or :class:`~b12kg.errors.InvalidPatientData` for bad input.
    """
    kb = kb or KnowledgeBase()
    data = patient if isinstance(patient, PatientData) else load_patient(patient, kb=kb)
    problems = validate_shapes(data, kb)
    if problems:
        raise InvalidPatientData(problems[0], problems=problems)
    ws = Workspace(kb)
    ws.add_triples("patients", data.triples)
    problems = validate_values(ws, data, as_of)
    if problems:
        raise InvalidPatientData(problems[0], problems=problems)
    evaluation = Evaluation(workspace=ws, source=data, as_of=as_of, reasoner=reasoner)
    normalise(ws, as_of)
    classify(ws, reasoner)
    derive(ws, as_of)
    schedule(ws, as_of)
    return evaluation


def days_per_unit(ws: Workspace, unit: str) -> Decimal:
    """Days in one ``unit`` (UCUM), from the ontology's conversions; asked once per workspace and unit."""
    cache = ws.memo.setdefault("days-per-unit", {})
    if unit not in cache:
        rows = ws.select("schedule/days-per-unit", {"unit": unit})
        if not rows:
            raise KnowledgeBaseError(f"no conversion from {unit!r} to days in the ontology")
        cache[unit] = Decimal(rows[0]["factor"].value)
    return cache[unit]


def normalise(ws: Workspace, as_of: date) -> None:
    """Canonical values, then the current result per analyte and the last B12 administration."""
    ws.construct_into("normalised", "normalise/canonical-values")  # later steps read the settled values
    policy = ws.select("schedule/result-currency")
    if len(policy) != 1:
        raise KnowledgeBaseError(f"expected one result currency policy in the ontology, found {len(policy)}")
    max_days = math.floor(Decimal(policy[0]["maxAge"].value) * days_per_unit(ws, policy[0]["maxAgeUnit"].value))
    not_before = as_of - timedelta(days=max_days)
    ws.construct_into("normalised", "normalise/current-results", {"asOf": as_of, "notBefore": not_before})
    ws.construct_into("normalised", "normalise/last-administration", {"asOf": as_of})


def derive(ws: Workspace, as_of: date) -> None:
    """Run ``queries/derive/*.rq`` in order into the derived graph."""
    bindings = {"asOf": as_of, "engineVersion": ENGINE_VERSION}
    for name, _ in ws.kb.queries("derive"):
        ws.construct_into("derived", name, bindings, settle=False)
    ws.settle("derived")


def _window(start: date, low: Decimal, high: Decimal, days: Decimal) -> tuple[date, date]:
    """[start + ceil(low × days), start + floor(high × days)]: the window never exceeds the stated range."""
    return start + timedelta(days=math.ceil(low * days)), start + timedelta(days=math.floor(high * days))


def _date(value: date) -> ox.Literal:
    return ox.Literal(value.isoformat(), datatype=XSD_DATE)


def schedule(ws: Workspace, as_of: date) -> None:
    """Next-dose windows from the last injection, and follow-up windows from the start of maintenance."""
    triples: list[ox.Triple] = []
    maintenance_start: dict[str, date] = {}
    for row in ws.select("schedule/next-dose-inputs", {"asOf": as_of}):
        patient = row["patient"].value
        if "lastDate" not in row:
            maintenance_start.setdefault(patient, as_of)
            continue
        last = date.fromisoformat(row["lastDate"].value[:10])
        days = days_per_unit(ws, row["intervalUnit"].value)
        earliest, latest = _window(last, Decimal(row["intervalMin"].value), Decimal(row["intervalMax"].value), days)
        rec = row["rec"]
        triples += [
            ox.Triple(rec, ox.NamedNode(B12 + "nextDueEarliest"), _date(earliest)),
            ox.Triple(rec, ox.NamedNode(B12 + "nextDueLatest"), _date(latest)),
            ox.Triple(rec, ox.NamedNode(PROV + "wasDerivedFrom"), row["lastInjection"]),
        ]
        maintenance_start[patient] = max(as_of, earliest)
    for row in ws.select("schedule/follow-up-inputs"):
        if row["anchor"].value != B12 + "maintenanceStart":
            raise KnowledgeBaseError(f"unsupported follow-up anchor {row['anchor'].value}")
        start = maintenance_start.get(row["patient"].value, as_of)
        days = days_per_unit(ws, row["intervalUnit"].value)
        first, last = _window(start, Decimal(row["intervalMin"].value), Decimal(row["intervalMax"].value), days)
        triples += [
            ox.Triple(row["rec"], ox.NamedNode(B12 + "windowStart"), _date(first)),
            ox.Triple(row["rec"], ox.NamedNode(B12 + "windowEnd"), _date(last)),
        ]
    ws.add_triples("derived", triples)
