"""The pipeline for patient files: read -> validate -> normalise -> classify -> derive -> schedule.

Data flows one way. Every step except date arithmetic is a SPARQL query from ``queries/``; the
numbers it uses (factors, thresholds, intervals, result age) are read from the ontology.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyoxigraph as ox

from b12kg import dates
from b12kg._version import ENGINE_VERSION
from b12kg.engine import Workspace
from b12kg.errors import InvalidPatientData, KnowledgeBaseError
from b12kg.inputs import check_evaluation_date
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
    check_evaluation_date(as_of)
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
    evaluate(ws, as_of, reasoner)
    return evaluation


def age_policy(ws: Workspace, kind: str) -> tuple[Decimal, str]:
    """The one age policy of class ``b12:{kind}`` (its maximum age and calendar unit); asked once per workspace."""
    cache = ws.memo.setdefault("age-policy", {})
    if kind not in cache:
        rows = ws.select("schedule/age-policy", {"kind": ox.NamedNode(B12 + kind)})
        if len(rows) != 1:
            raise KnowledgeBaseError(f"expected one b12:{kind} in the ontology, found {len(rows)}")
        cache[kind] = (Decimal(rows[0]["maxAge"].value), rows[0]["maxAgeUnit"].value)
    return cache[kind]


def oldest_counted(ws: Workspace, kind: str, as_of: date) -> date:
    """The oldest day a fact may carry and still count under the age policy ``b12:{kind}`` at ``as_of``."""
    amount, unit = age_policy(ws, kind)
    return dates.subtract(as_of, amount, unit)


def normalise(ws: Workspace, as_of: date) -> None:
    """Canonical values, then the current (or conflicting) results per analyte, the B12 doses that count
    as current treatment, the last B12 administrations and the neurological assessments since the stroke."""
    ws.construct_into("normalised", "normalise/canonical-values")  # later steps read the settled values
    ws.construct_into("normalised", "normalise/current-results",
                      {"asOf": as_of, "notBefore": oldest_counted(ws, "ResultCurrencyPolicy", as_of)})
    ws.construct_into("normalised", "normalise/recent-administrations",
                      {"asOf": as_of, "notBefore": oldest_counted(ws, "TreatmentLapsePolicy", as_of)})
    ws.construct_into("normalised", "normalise/last-administration", {"asOf": as_of})
    ws.construct_into("normalised", "normalise/assessments-since-stroke")


def derive(ws: Workspace, as_of: date) -> None:
    """Run ``queries/derive/*.rq`` in order into the derived graph."""
    bindings = {"asOf": as_of, "engineVersion": ENGINE_VERSION}
    for name, _ in ws.kb.queries("derive"):
        ws.construct_into("derived", name, bindings, settle=False)
    ws.settle("derived")


def expand(ws: Workspace) -> None:
    """Run ``queries/research/expand/*.rq`` into the derived graph: the provenance a lean derived graph
    leaves to joins (each finding's activity, guideline element, evidence and patient facts)."""
    for name, _ in ws.kb.queries("research/expand"):
        ws.construct_into("derived", name, settle=False)
    ws.settle("derived")


def evaluate(ws: Workspace, as_of: date, reasoner: Reasoner = Reasoner.rules, *, expanded: bool = True) -> None:
    """The pipeline after validation, on the patients already in ``ws``: normalise, classify, derive,
    schedule, and (``expanded``) the expanded provenance; a store keeps the lean derived graph only."""
    normalise(ws, as_of)
    classify(ws, reasoner)
    derive(ws, as_of)
    schedule(ws, as_of)
    if expanded:
        expand(ws)


def _date(value: date) -> ox.Literal:
    return ox.Literal(value.isoformat(), datatype=XSD_DATE)


def schedule(ws: Workspace, as_of: date) -> None:
    """Next-dose windows from the last injection (with the dose's status at ``as_of``), and follow-up
    windows from the start of maintenance. Calendar arithmetic (:mod:`b12kg.dates`)."""
    triples: list[ox.Triple] = []
    maintenance_start: dict[str, date] = {}
    done: set[str] = set()
    for row in ws.select("schedule/next-dose-inputs", {"asOf": as_of}):
        patient = row["patient"].value
        if "lastDay" not in row:
            maintenance_start.setdefault(patient, as_of)
            continue
        rec = row["rec"]
        triples.append(ox.Triple(rec, ox.NamedNode(PROV + "wasDerivedFrom"), row["lastInjection"]))
        if rec.value in done:
            continue
        done.add(rec.value)
        last = date.fromisoformat(row["lastDay"].value)
        unit = row["intervalUnit"].value
        earliest, latest = dates.window(last, Decimal(row["intervalMin"].value), Decimal(row["intervalMax"].value), unit)
        if as_of < earliest:
            status = "notYetDue"
        elif as_of <= latest:
            status = "dueNow"
        else:
            status = "overdue"
            triples.append(ox.Triple(rec, ox.NamedNode(B12 + "overdueSince"), _date(dates.add(latest, 1, "d"))))
        triples += [
            ox.Triple(rec, ox.NamedNode(B12 + "nextDueEarliest"), _date(earliest)),
            ox.Triple(rec, ox.NamedNode(B12 + "nextDueLatest"), _date(latest)),
            ox.Triple(rec, ox.NamedNode(B12 + "doseStatus"), ox.NamedNode(B12 + status)),
        ]
        maintenance_start[patient] = max(as_of, earliest)
    for row in ws.select("schedule/follow-up-inputs"):
        if row["anchor"].value != B12 + "maintenanceStart":
            raise KnowledgeBaseError(f"unsupported follow-up anchor {row['anchor'].value}")
        start = maintenance_start.get(row["patient"].value, as_of)
        first, last = dates.window(start, Decimal(row["intervalMin"].value), Decimal(row["intervalMax"].value),
                                   row["intervalUnit"].value)
        triples += [
            ox.Triple(row["rec"], ox.NamedNode(B12 + "windowStart"), _date(first)),
            ox.Triple(row["rec"], ox.NamedNode(B12 + "windowEnd"), _date(last)),
        ]
    ws.add_triples("derived", triples)
