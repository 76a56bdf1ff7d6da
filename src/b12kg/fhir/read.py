"""Reading FHIR R4 (Bundles, single resources, folders, NDJSON bulk files) into the patient vocabulary.

Data flows one way: read JSON (numbers as exact :class:`~decimal.Decimal`) -> check each resource
(known ``resourceType``; the types this module maps are validated with ``fhir.resources``) -> map
Patient, Condition, Observation, MedicationAdministration, MedicationStatement (as given) and
MedicationRequest (as intent only) onto ``b12:`` facts -> an import report per patient.

Every code and unit decision is data: the bindings come from the ontology through
``queries/fhir/bindings.rq`` and ``queries/fhir/units.rq`` (value sets, analytes, substances,
routes, interpretation flags, unit conversions, aliases and rejected units). This module only knows
the shape of FHIR resources.

Validation: ``fhir.resources`` has no model package for R4 (4.0.1) in its pydantic-2 releases; it
ships R4B (4.3.0), whose Patient, Condition, Observation, Medication, MedicationAdministration,
MedicationStatement and MedicationRequest are structurally the R4 ones. Validating whole Synthea
bundles (Claims, ExplanationOfBenefits) takes about 6 s for 24 patients, so only the resource types
this module maps are validated with it; every other resource is only checked for a known
``resourceType``.

Identifiers are deterministic: a source resource is named by its ``fullUrl`` when that is absolute
(``urn:uuid:``, ``http(s)://``), else ``urn:b12kg:fhir:{type}/{id}``; a patient is
``urn:b12kg:patient:{id}`` and a fact ``urn:b12kg:fact:{type}/{id}[/component-{n}]``. Each fact
carries ``prov:wasDerivedFrom`` its source resource.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from b12kg import namespaces as ns
from b12kg.errors import InputError, InvalidPatientData
from b12kg.inputs import check_json, number_problem, read_input, utf8
from b12kg.kb import KnowledgeBase

__all__ = [
    "Bindings",
    "ImportResult",
    "PatientReport",
    "import_fhir",
    "is_fhir_json",
    "load_fhir_patient",
]

# FHIR structure (not clinical knowledge): which resource types are mapped, which statuses mean what.
MAPPED_TYPES = frozenset(
    {"Patient", "Condition", "Observation", "MedicationAdministration", "MedicationStatement", "MedicationRequest", "Medication"}
)
UCUM_SYSTEM = "http://unitsofmeasure.org"
IGNORED_STATUS = {"entered-in-error", "cancelled"}
CONDITION_IGNORED_VERIFICATION = {"entered-in-error", "refuted"}
ADMINISTRATION_GIVEN = {"completed"}
STATEMENT_GIVEN = {"completed", "active"}
REQUEST_IGNORED = {"entered-in-error", "cancelled"}

_B12 = "https://w3id.org/b12kg/ontology#"
_XSD = "http://www.w3.org/2001/XMLSchema#"
_RDF_TYPE = ox.NamedNode(ns.RDF_TYPE)
_RDFS_LABEL = ox.NamedNode("http://www.w3.org/2000/01/rdf-schema#label")
_DERIVED_FROM = ox.NamedNode(str(ns.PROV) + "wasDerivedFrom")
_PROV_ENTITY = ox.NamedNode(str(ns.PROV) + "Entity")
_DATE = ox.NamedNode(_XSD + "date")
_DATETIME = ox.NamedNode(_XSD + "dateTime")
_DECIMAL = ox.NamedNode(_XSD + "decimal")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_TYPE_ID_REF = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def _b12(local: str) -> ox.NamedNode:
    return ox.NamedNode(_B12 + local)


P = {name: _b12(name) for name in (
    "Patient", "Condition", "LabResult", "MedicationAdministration", "MedicationRequest", "NeurologicalAssessment",
    "birthDate", "hasCondition", "hasLabResult", "hasAdministration", "hasMedicationRequest",
    "hasNeurologicalAssessment", "code", "onsetDate", "value", "unit", "effectiveDate", "interpretation",
    "substance", "route", "doseValue", "doseUnit", "authoredOn", "symptomStatus", "fhirReference",
)}


# ------------------------------------------------------------------------------------------ bindings
@dataclass(frozen=True)
class Binding:
    kind: str
    code: str  #: the code individual's IRI
    target: str  #: analyte, condition class, substance, route, flag, status or assessment class
    verified: bool


@dataclass
class Bindings:
    """The code and unit bindings of one knowledge base, read from the ontology."""

    codes: dict[tuple[str, str], list[Binding]]
    convertible: dict[str, set[str]]  #: analyte IRI -> UCUM units with a conversion to its canonical unit
    canonical: dict[str, str]  #: analyte IRI -> canonical unit
    labels: dict[str, str]  #: analyte IRI -> label
    rejected: dict[tuple[str, str], str]  #: (analyte IRI, unit) -> reason
    aliases: dict[str, str]  #: unit text -> UCUM code

    @classmethod
    def load(cls, kb: KnowledgeBase) -> Bindings:
        files = tuple(sorted((str(p), p.stat().st_mtime) for p in kb.ontology_files.values()))
        return _load_bindings(kb, files)

    def find(self, concept: dict[str, Any] | None, kind: str) -> list[Binding]:
        """Bindings of ``kind`` for any coding of a CodeableConcept."""
        found = []
        for coding in (concept or {}).get("coding", []) or []:
            key = (str(coding.get("system", "")), str(coding.get("code", "")))
            found += [b for b in self.codes.get(key, []) if b.kind == kind]
        return found

    def ucum(self, quantity: dict[str, Any]) -> str | None:
        """A Quantity's UCUM unit: its ``code`` when the system is UCUM, else its ``unit`` text (aliases applied)."""
        if quantity.get("system") == UCUM_SYSTEM and quantity.get("code"):
            return str(quantity["code"])
        text = quantity.get("unit")
        if text is None:
            return None
        return self.aliases.get(str(text), str(text))


@lru_cache(maxsize=8)
def _load_bindings(kb: KnowledgeBase, _files: tuple) -> Bindings:
    store = ox.Store()
    store.extend(kb.ontology_quads(ox.NamedNode(ns.GRAPH_ONTOLOGY)))

    def rows(name: str) -> list[dict[str, str]]:
        solutions = store.query(kb.query(name), use_default_graph_as_union=True)
        names = [v.value for v in solutions.variables]
        return [{n: s[n].value for n in names if s[n] is not None} for s in solutions]

    codes: dict[tuple[str, str], list[Binding]] = defaultdict(list)
    for r in rows("fhir/bindings"):
        codes[(r["system"], r["notation"])].append(
            Binding(r["kind"], r["code"], r["target"], r.get("verification") == _B12 + "Verified")
        )
    convertible: dict[str, set[str]] = defaultdict(set)
    canonical, labels, rejected, aliases = {}, {}, {}, {}
    for r in rows("fhir/units"):
        if r["kind"] == "alias":
            aliases[r["text"]] = r["unit"]
            continue
        canonical[r["analyte"]] = r["canonicalUnit"]
        labels[r["analyte"]] = r["analyteLabel"]
        if r["kind"] == "conversion":
            convertible[r["analyte"]].add(r["unit"])
        else:
            rejected[(r["analyte"], r["unit"])] = r["reason"]
    return Bindings(dict(codes), dict(convertible), canonical, labels, rejected, aliases)


# ------------------------------------------------------------------------------------------ reports
@dataclass
class PatientReport:
    """What was mapped for one patient, what was skipped and why."""

    patient: str
    source: str | None = None
    mapped: Counter = field(default_factory=Counter)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)
    not_used: Counter = field(default_factory=Counter)
    unverified_codes: set[str] = field(default_factory=set)

    def skip(self, resource: str, reason: str) -> None:
        self.skipped.append({"resource": resource, "reason": reason})

    def note(self, resource: str, text: str) -> None:
        self.notes.append({"resource": resource, "note": text})

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "source": self.source,
            "mapped": dict(sorted(self.mapped.items())),
            "skipped": self.skipped,
            "notes": self.notes,
            "not_used": dict(sorted(self.not_used.items())),
            "unverified_codes": sorted(self.unverified_codes),
        }

    def to_text(self) -> str:
        mapped = ", ".join(f"{n} {k}" for k, n in sorted(self.mapped.items())) or "nothing"
        lines = [f"{self.patient}{f' (from {self.source})' if self.source else ''}: mapped {mapped}"]
        lines += [f"  skipped {s['resource']}: {s['reason']}" for s in self.skipped]
        lines += [f"  note {n['resource']}: {n['note']}" for n in self.notes]
        if self.unverified_codes:
            lines.append(f"  unverified code bindings used: {', '.join(sorted(self.unverified_codes))}")
        if self.not_used:
            lines.append("  not used by the guideline: " + ", ".join(f"{n} {k}" for k, n in sorted(self.not_used.items())))
        return "\n".join(lines)


@dataclass
class ImportResult:
    """The triples of an import, the report per patient, and the problems that stopped a file or resource."""

    triples: list[ox.Triple]
    reports: dict[str, PatientReport]
    errors: list[str]
    files: list[Path]
    resources: Counter  #: resourceType -> how many were read
    unattached: list[dict[str, str]]  #: mapped-type resources without a patient
    invalid: list[str] = field(default_factory=list)  #: values refused as outside the engine's limits

    @property
    def patients(self) -> list[str]:
        return sorted(self.reports)

    def quads(self, graph: str = ns.GRAPH_PATIENTS) -> list[ox.Quad]:
        g = ox.NamedNode(graph)
        return [ox.Quad(t.subject, t.predicate, t.object, g) for t in self.triples]

    def turtle(self) -> str:
        prefixes = {"b12": _B12, "prov": str(ns.PROV), "xsd": _XSD, "loinc": "http://loinc.org/rdf#",
                    "sct": "http://snomed.info/id/", "rdfs": "http://www.w3.org/2000/01/rdf-schema#"}
        return ox.serialize(self.triples, format=ox.RdfFormat.TURTLE, prefixes=prefixes).decode("utf-8")

    def report_dict(self) -> dict[str, Any]:
        return {
            "files": len(self.files),
            "resources": dict(sorted(self.resources.items())),
            "patients": [self.reports[p].to_dict() for p in self.patients],
            "unattached": self.unattached,
            "errors": self.errors,
            "invalid": self.invalid,
        }

    def report_text(self) -> str:
        lines = [f"imported {len(self.files)} file(s), {sum(self.resources.values())} resource(s), {len(self.reports)} patient(s)"]
        lines += [self.reports[p].to_text() for p in self.patients]
        lines += [f"skipped {u['resource']}: {u['reason']}" for u in self.unattached]
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ reading
def _safe_iri(text: str) -> str:
    """``text`` when it is a valid IRI, otherwise with the characters an IRI cannot hold
    percent-encoded: FHIR ids and fullUrls from the wild may hold any character."""
    try:
        ox.NamedNode(text)
        return text
    except ValueError:
        from urllib.parse import quote

        return quote(text, safe=":/#?&=@+-._~!$'()*,;")


@dataclass
class _Resource:
    file: Path
    index: int
    data: dict[str, Any]
    full_url: str | None
    bundle: int  #: which bundle (or file) the resource came from, for fullUrl resolution

    @property
    def type(self) -> str:
        return str(self.data.get("resourceType"))

    @property
    def id(self) -> str | None:
        rid = self.data.get("id")
        return str(rid) if rid else None

    @property
    def key(self) -> str:
        """``Type/id``; without an id, the fullUrl's last segment or a hash of file and position."""
        if self.id:
            return f"{self.type}/{self.id}"
        if self.full_url and self.full_url.startswith("urn:uuid:"):
            return f"{self.type}/{self.full_url[9:]}"
        digest = hashlib.sha1(f"{self.file.resolve()}#{self.index}".encode()).hexdigest()[:16]
        return f"{self.type}/{digest}"

    @property
    def iri(self) -> str:
        if self.full_url and re.match(r"^(urn:uuid:|urn:oid:|https?://)", self.full_url):
            return _safe_iri(self.full_url)
        if self.id:
            return _safe_iri(f"urn:b12kg:fhir:{self.type}/{self.id}")
        return f"{self.file.resolve().as_uri()}#resource-{self.index}"

    @property
    def label(self) -> str:
        return self.key

    @property
    def reference(self) -> str | None:
        """How FHIR refers to this resource: ``Type/id``, or its ``urn:uuid:`` fullUrl; None without either."""
        if self.id:
            return f"{self.type}/{self.id}"
        if self.full_url and self.full_url.startswith("urn:uuid:"):
            return self.full_url
        return None


def _collect(paths: list[Path]) -> tuple[list[Path], list[str]]:
    files, errors = [], []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".json", ".ndjson"))
        elif path.is_file():
            files.append(path)
        else:
            errors.append(f"{path}: no such file or folder")
    return files, errors


def _json_error(path: Path, exc: json.JSONDecodeError, line: int | None = None) -> str:
    where = f"line {line if line is not None else exc.lineno} column {exc.colno}"
    return f"{path}: not valid JSON at {where}"


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _loads(text: str) -> Any:
    """JSON with decimals kept exact; NaN and Infinity (which JSON does not have) refused."""
    return json.loads(text, parse_float=Decimal, parse_constant=_not_json)


def _documents(path: Path) -> tuple[list[tuple[int, Any]], list[str]]:
    """(position, parsed JSON) pairs of a file: one document, or one per NDJSON line. The file is
    within the input limits (size, nesting) before the JSON parser reads it."""
    try:
        data = read_input(path)
        check_json(data, path)
        text = utf8(data, path, bom=True)
    except InputError as exc:
        return [], [exc.message]
    if path.suffix.lower() == ".ndjson":
        docs, errors = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                docs.append((number, _loads(line)))
            except json.JSONDecodeError as exc:
                errors.append(_json_error(path, exc, number))
            except ValueError as exc:  # NaN, or an integer past Python's digit limit
                errors.append(f"{path}: line {number}: {exc}")
        return docs, errors
    try:
        return [(1, _loads(text))], []
    except json.JSONDecodeError as exc:
        return [], [_json_error(path, exc)]
    except ValueError as exc:
        return [], [f"{path}: {exc}"]


def _validation_error(resource: _Resource) -> str | None:
    """The first ``fhir.resources`` validation error of a mapped-type resource, or None."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    try:
        get_fhir_model_class(resource.type).model_validate(resource.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first.get("loc", ()) if x != "__root__")
        return f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
    return None


def _known_type(name: str) -> bool:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(name)
    except (ValueError, KeyError, AttributeError, ImportError):
        return False
    return True


def _read(files: list[Path]) -> tuple[list[_Resource], list[str], Counter]:
    resources, errors, counts = [], [], Counter()
    known: dict[str, bool] = {}
    bundle_no = 0
    for path in files:
        docs, errs = _documents(path)
        errors += errs
        for position, doc in docs:
            bundle_no += 1
            entries: list[tuple[int, Any, str | None]]
            if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
                counts["Bundle"] += 1
                entries = [
                    (n, e.get("resource"), e.get("fullUrl"))
                    for n, e in enumerate(doc.get("entry", []) or [], start=1)
                    if isinstance(e, dict) and e.get("resource") is not None
                ]
            else:
                entries = [(position, doc, None)]
            for n, data, full_url in entries:
                if not isinstance(data, dict) or "resourceType" not in data:
                    errors.append(f"{path}: resource #{n}: not a FHIR resource (no resourceType)")
                    continue
                rtype = str(data["resourceType"])
                if rtype not in known:
                    known[rtype] = _known_type(rtype)
                if not known[rtype]:
                    errors.append(f"{path}: resource #{n}: unknown resourceType {rtype!r}")
                    continue
                resource = _Resource(path, n, data, str(full_url) if full_url else None, bundle_no)
                if rtype in MAPPED_TYPES:
                    problem = _validation_error(resource)
                    if problem:
                        errors.append(f"{path}: {resource.label}: {problem}")
                        continue
                counts[rtype] += 1
                resources.append(resource)
    return resources, errors, counts


# ------------------------------------------------------------------------------------------ mapping
def _as_decimal(value: Any) -> Decimal | None:
    """A JSON number as a Decimal; None for anything else (absent, text, a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
        return None
    return Decimal(value)


def _decimal_literal(value: Decimal) -> ox.Literal:
    """(Only for a value :func:`b12kg.inputs.number_problem` accepts; zero may carry any exponent.)"""
    if value.is_zero():
        value = Decimal(0)
    return ox.Literal(format(value, "f"), datatype=_DECIMAL)


def _date_literal(text: str | None) -> tuple[ox.Literal | None, str | None]:
    """An xsd:date / xsd:dateTime for a FHIR date or dateTime; (None, why) when absent or not to the day."""
    if not text:
        return None, "no date"
    text = str(text)
    if _DAY.match(text):
        return ox.Literal(text, datatype=_DATE), None
    if _DATETIME_RE.match(text):
        return ox.Literal(text, datatype=_DATETIME), None
    return None, f"date {text!r} is not precise to the day"


def _effective(data: dict[str, Any]) -> str | None:
    if data.get("effectiveDateTime"):
        return data["effectiveDateTime"]
    if data.get("effectiveInstant"):
        return data["effectiveInstant"]
    period = data.get("effectivePeriod") or {}
    return period.get("start")


class _Mapper:
    def __init__(self, bindings: Bindings, resources: list[_Resource]) -> None:
        self.b = bindings
        self.resources = resources
        self.triples: list[ox.Triple] = []
        self.reports: dict[str, PatientReport] = {}
        self.unattached: list[dict[str, str]] = []
        self.invalid: list[str] = []  #: values refused as out of the engine's limits (never silently dropped)
        self.by_url: dict[tuple[int, str], _Resource] = {}
        self.by_key: dict[str, _Resource] = {}
        self.assessments: dict[str, list[tuple[str, ox.NamedNode, list[ox.Triple], str]]] = defaultdict(list)
        for r in resources:
            if r.full_url:
                self.by_url[(r.bundle, r.full_url)] = r
            self.by_key.setdefault(r.key, r)

    # ---- helpers
    def refuse_number(self, resource: _Resource, label: str, patient: str, what: str, value: Decimal) -> bool:
        """True (and the value refused, with its reason) when ``value`` is outside the numbers b12kg uses."""
        problem = number_problem(str(value))
        if problem is None:
            return False
        shown = str(value) if len(str(value)) <= 60 else str(value)[:60] + "…"
        self.invalid.append(f"{resource.file}: {label}: {what} {shown} {problem}")
        self.report(patient).skip(label, f"{what} {shown} {problem}; refused")
        return True

    def report(self, patient: str) -> PatientReport:
        if patient not in self.reports:
            self.reports[patient] = PatientReport(patient)
        return self.reports[patient]

    def add(self, s: ox.NamedNode, p: ox.NamedNode, o: ox.NamedNode | ox.Literal) -> None:
        self.triples.append(ox.Triple(s, p, o))

    def resolve(self, resource: _Resource, reference: str) -> _Resource | None:
        if reference in (None, ""):
            return None
        if reference.startswith("#"):
            for contained in resource.data.get("contained", []) or []:
                if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                    return _Resource(resource.file, resource.index, contained, None, resource.bundle)
            return None
        found = self.by_url.get((resource.bundle, reference))
        if found:
            return found
        match = _TYPE_ID_REF.search(reference)
        return self.by_key.get(f"{match.group(1)}/{match.group(2)}") if match else None

    def patient_of(self, resource: _Resource) -> str | None:
        """The patient IRI a resource is about (minted from the reference when the Patient is not in the input)."""
        ref = ((resource.data.get("subject") or resource.data.get("patient")) or {}).get("reference")
        if not ref:
            return None
        target = self.resolve(resource, ref)
        if target is not None:
            return self.patient_iri(target) if target.type == "Patient" else None
        if ref.startswith("urn:uuid:"):
            return _safe_iri(f"urn:b12kg:patient:{ref[9:]}")
        match = _PATIENT_REF.search(ref)
        return _safe_iri(f"urn:b12kg:patient:{match.group(1)}") if match else None

    @staticmethod
    def patient_iri(resource: _Resource) -> str:
        return _safe_iri("urn:b12kg:patient:" + resource.key.split("/", 1)[1])

    @staticmethod
    def fact_iri(resource: _Resource, part: str = "") -> ox.NamedNode:
        return ox.NamedNode(_safe_iri(f"urn:b12kg:fact:{resource.key}{part}"))

    def provenance(self, fact: ox.NamedNode, resource: _Resource) -> None:
        source = ox.NamedNode(resource.iri)
        self.add(fact, _DERIVED_FROM, source)
        self.add(source, _RDF_TYPE, _PROV_ENTITY)
        self.add(source, _RDFS_LABEL, ox.Literal(f"FHIR {resource.label}"))
        if resource.reference:
            self.add(source, P["fhirReference"], ox.Literal(resource.reference))

    def attach(self, patient: str, link: str, fact: ox.NamedNode, kind: str) -> None:
        self.add(ox.NamedNode(patient), P[link], fact)
        self.add(ox.NamedNode(patient), _RDF_TYPE, P["Patient"])
        self.report(patient).mapped[kind] += 1

    def use_codes(self, patient: str, bindings: list[Binding]) -> None:
        for b in bindings:
            if not b.verified:
                self.report(patient).unverified_codes.add(b.code)

    # ---- the run
    def run(self) -> None:
        seen: dict[str, Path] = {}
        for resource in self.resources:
            if resource.type not in MAPPED_TYPES or resource.type == "Medication":
                continue
            if resource.key in seen:
                patient = self.patient_iri(resource) if resource.type == "Patient" else self.patient_of(resource)
                reason = f"duplicate of the resource already read from {seen[resource.key]}"
                (self.report(patient).skip(resource.label, reason) if patient else
                 self.unattached.append({"resource": resource.label, "reason": reason}))
                continue
            seen[resource.key] = resource.file
            if resource.type == "Patient":
                self.patient(resource)
                continue
            patient = self.patient_of(resource)
            if patient is None:
                self.unattached.append({"resource": resource.label, "reason": "subject is not a Patient of the input"})
                continue
            getattr(self, resource.type[0].lower() + resource.type[1:])(resource, patient)
        self.pick_assessments()

    def patient(self, resource: _Resource) -> None:
        iri = self.patient_iri(resource)
        node = ox.NamedNode(iri)
        report = self.report(iri)
        report.source = resource.label
        self.add(node, _RDF_TYPE, P["Patient"])
        self.provenance(node, resource)
        report.mapped["patient"] += 1
        literal, why = _date_literal(resource.data.get("birthDate"))
        if literal is not None and literal.datatype == _DATE:
            self.add(node, P["birthDate"], literal)
        elif resource.data.get("birthDate"):
            report.note(resource.label, f"birth date not used: {why}")

    def condition(self, resource: _Resource, patient: str) -> None:
        report = self.report(patient)
        verification = {c.get("code") for c in (resource.data.get("verificationStatus") or {}).get("coding", [])}
        ignored = verification & CONDITION_IGNORED_VERIFICATION
        if ignored:
            report.skip(resource.label, f"verification status {sorted(ignored)[0]}; ignored")
            return
        bound = self.b.find(resource.data.get("code"), "condition")
        if not bound:
            report.not_used["Condition"] += 1
            return
        fact = self.fact_iri(resource)
        self.add(fact, _RDF_TYPE, P["Condition"])
        for code in sorted({b.code for b in bound}):
            self.add(fact, P["code"], ox.NamedNode(code))
        self.use_codes(patient, bound)
        onset = resource.data.get("onsetDateTime") or (resource.data.get("onsetPeriod") or {}).get("start")
        if onset:
            literal, why = _date_literal(onset)
            if literal is not None:
                self.add(fact, P["onsetDate"], literal)
            else:
                report.note(resource.label, f"onset not used: {why}")
        self.provenance(fact, resource)
        self.attach(patient, "hasCondition", fact, "conditions")

    def observation(self, resource: _Resource, patient: str) -> None:
        report = self.report(patient)
        data = resource.data
        status = data.get("status")
        if status in IGNORED_STATUS:
            report.skip(resource.label, f"status {status}; ignored")
            return
        analytes = self.b.find(data.get("code"), "analyte")
        assessments = self.b.find(data.get("code"), "assessment")
        components = [
            (n, c, self.b.find(c.get("code"), "analyte"))
            for n, c in enumerate(data.get("component", []) or [], start=1)
            if isinstance(c, dict)
        ]
        components = [(n, c, bound) for n, c, bound in components if bound]
        if not analytes and not assessments and not components:
            report.not_used["Observation"] += 1
            return
        date_text = _effective(data)
        if not date_text and data.get("issued"):
            date_text = data["issued"]
            report.note(resource.label, "no effective date; the issued date is used")
        date, why = _date_literal(date_text)
        if date is None:
            report.skip(resource.label, "undated (no effective date and no issued date)" if why == "no date" else why)
            return
        if assessments:
            self.assessment(resource, patient, assessments, date)
            return
        if analytes and "valueQuantity" in data:
            self.lab_result(resource, patient, analytes, data["valueQuantity"], date, "")
        elif analytes and not components:
            kind = next((k for k in data if k.startswith("value")), None)
            reason = f"value is {kind}, not a Quantity" if kind else "no value" + (
                f" (data absent: {(data.get('dataAbsentReason') or {}).get('text') or 'reason given'})"
                if data.get("dataAbsentReason") else "")
            report.skip(resource.label, reason)
        for n, component, bound in components:
            if "valueQuantity" not in component:
                report.skip(f"{resource.label} component {n}", "no Quantity value")
                continue
            self.lab_result(resource, patient, bound, component["valueQuantity"], date, f"/component-{n}")

    def lab_result(self, resource: _Resource, patient: str, bound: list[Binding], quantity: dict, date: ox.Literal, part: str) -> None:
        report = self.report(patient)
        label = resource.label + (f" {part.strip('/')}" if part else "")
        analyte = bound[0].target
        name = self.b.labels.get(analyte, analyte)
        value = quantity.get("value")
        if value is None:
            report.skip(label, "Quantity has no value")
            return
        if quantity.get("comparator"):
            report.skip(label, f"value {quantity['comparator']}{value} is a bound, not an exact value; not used")
            return
        try:
            value = Decimal(value)
        except (InvalidOperation, TypeError, ValueError):
            report.skip(label, f"value {value!r} is not a number")
            return
        if self.refuse_number(resource, label, patient, "value", value):
            return
        if value < 0:
            report.skip(label, f"negative value {value}; not used")
            return
        unit = self.b.ucum(quantity)
        if unit is None:
            report.skip(label, f"no unit; {name} needs one")
            return
        if (analyte, unit) in self.b.rejected:
            report.skip(label, self.b.rejected[(analyte, unit)])
            return
        if unit not in self.b.convertible.get(analyte, set()):
            known = ", ".join(sorted(self.b.convertible.get(analyte, set())))
            report.skip(label, f"unit {unit} cannot be converted to {self.b.canonical.get(analyte)} for {name} "
                               f"(convertible: {known}); result unusable")
            return
        fact = self.fact_iri(resource, part)
        self.add(fact, _RDF_TYPE, P["LabResult"])
        for code in sorted({b.code for b in bound}):
            self.add(fact, P["code"], ox.NamedNode(code))
        self.add(fact, P["value"], _decimal_literal(value))
        self.add(fact, P["unit"], ox.Literal(unit))
        self.add(fact, P["effectiveDate"], date)
        flags = self.b.find((resource.data.get("interpretation") or [None])[0], "interpretation")
        if flags:
            self.add(fact, P["interpretation"], ox.NamedNode(flags[0].target))
            self.use_codes(patient, flags[:1])
        self.use_codes(patient, bound)
        self.provenance(fact, resource)
        self.attach(patient, "hasLabResult", fact, "lab results")

    def assessment(self, resource: _Resource, patient: str, bound: list[Binding], date: ox.Literal) -> None:
        data = resource.data
        status = None
        if "valueBoolean" in data:
            status = _B12 + ("present" if data["valueBoolean"] else "absent")
        else:
            found = self.b.find(data.get("valueCodeableConcept"), "symptomStatus")
            status = found[0].target if found else None
            self.use_codes(patient, found[:1])
        if status is None:
            self.report(patient).skip(resource.label, "assessment value is not present/absent")
            return
        fact = self.fact_iri(resource)
        triples = [
            ox.Triple(fact, _RDF_TYPE, ox.NamedNode(bound[0].target)),
            ox.Triple(fact, P["symptomStatus"], ox.NamedNode(status)),
            ox.Triple(fact, P["effectiveDate"], date),
        ]
        self.use_codes(patient, bound)
        self.assessments[patient].append((date.value, fact, triples, resource.label))

    def pick_assessments(self) -> None:
        """Every neurological assessment is kept: which ones count after the stroke is the engine's
        decision (``gl:neurological-reports-since-stroke``), and an older report of symptoms must not be lost."""
        for patient, items in self.assessments.items():
            items.sort(key=lambda x: (x[0][:10], x[0], x[1].value))
            for _, fact, triples, label in items:
                self.triples += triples
                source = next(r for r in self.resources if r.label == label)
                self.provenance(fact, source)
                self.attach(patient, "hasNeurologicalAssessment", fact, "neurological assessments")

    # ---- medications
    def medication_concept(self, resource: _Resource) -> dict | None:
        data = resource.data
        if data.get("medicationCodeableConcept"):
            return data["medicationCodeableConcept"]
        ref = (data.get("medicationReference") or {}).get("reference")
        target = self.resolve(resource, ref) if ref else None
        return target.data.get("code") if target is not None and target.type == "Medication" else None

    def medication(self, resource: _Resource, patient: str, *, given: bool, dosage: dict, date_text: str | None) -> None:
        report = self.report(patient)
        substances = self.b.find(self.medication_concept(resource), "substance")
        if not substances:
            report.not_used[resource.type] += 1
            return
        kind = "MedicationAdministration" if given else "MedicationRequest"
        fact = self.fact_iri(resource)
        triples = [ox.Triple(fact, _RDF_TYPE, P[kind]), ox.Triple(fact, P["substance"], ox.NamedNode(substances[0].target))]
        routes = self.b.find(dosage.get("route"), "route")
        if routes:
            triples.append(ox.Triple(fact, P["route"], ox.NamedNode(routes[0].target)))
        elif given:
            report.skip(resource.label, "B12 given without a route that maps to intramuscular, subcutaneous or oral")
            return
        date, why = _date_literal(date_text)
        if date is None and given:
            report.skip(resource.label, "undated (no effective date)" if why == "no date" else why)
            return
        if date is not None:
            triples.append(ox.Triple(fact, P["effectiveDate" if given else "authoredOn"], date))
        dose = dosage.get("dose") or dosage.get("doseQuantity") or {}
        amount = _as_decimal(dose.get("value"))
        if amount is not None and self.refuse_number(resource, resource.label, patient, "dose", amount):
            return
        if amount is not None and amount > 0 and self.b.ucum(dose):
            triples.append(ox.Triple(fact, P["doseValue"], _decimal_literal(amount)))
            triples.append(ox.Triple(fact, P["doseUnit"], ox.Literal(self.b.ucum(dose))))
        self.triples += triples
        self.use_codes(patient, substances[:1] + routes[:1])
        self.provenance(fact, resource)
        if given:
            self.attach(patient, "hasAdministration", fact, "administrations")
        else:
            self.attach(patient, "hasMedicationRequest", fact, "medication requests (intent)")

    def medicationAdministration(self, resource: _Resource, patient: str) -> None:  # noqa: N802
        status = resource.data.get("status")
        if status not in ADMINISTRATION_GIVEN:
            self.report(patient).skip(resource.label, f"status {status}: not recorded as given")
            return
        self.medication(resource, patient, given=True, dosage=resource.data.get("dosage") or {},
                        date_text=_effective(resource.data))

    def medicationStatement(self, resource: _Resource, patient: str) -> None:  # noqa: N802
        status = resource.data.get("status")
        if status not in STATEMENT_GIVEN:
            self.report(patient).skip(resource.label, f"status {status}: not recorded as given")
            return
        dosage = (resource.data.get("dosage") or [{}])[0]
        dose = ((dosage.get("doseAndRate") or [{}])[0]).get("doseQuantity")
        self.medication(resource, patient, given=True, dosage={**dosage, "dose": dose},
                        date_text=_effective(resource.data))

    def medicationRequest(self, resource: _Resource, patient: str) -> None:  # noqa: N802
        status = resource.data.get("status")
        if status in REQUEST_IGNORED:
            self.report(patient).skip(resource.label, f"status {status}; ignored")
            return
        dosage = (resource.data.get("dosageInstruction") or [{}])[0]
        dose = ((dosage.get("doseAndRate") or [{}])[0]).get("doseQuantity")
        self.medication(resource, patient, given=False, dosage={**dosage, "dose": dose},
                        date_text=resource.data.get("authoredOn"))


# ------------------------------------------------------------------------------------------ public API
def import_fhir(paths: list[str | Path] | str | Path, *, kb: KnowledgeBase | None = None) -> ImportResult:
    """Read FHIR files and folders into patient-vocabulary triples, with a report per patient.

    Files that are not JSON, resources of an unknown type and resources that ``fhir.resources``
    rejects are listed in :attr:`ImportResult.errors`; everything else still imports.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files, errors = _collect([Path(p) for p in paths])
    resources, read_errors, counts = _read(files)
    mapper = _Mapper(Bindings.load(kb or KnowledgeBase()), resources)
    mapper.run()
    return ImportResult(
        triples=list(dict.fromkeys(mapper.triples)),
        reports=mapper.reports,
        errors=errors + read_errors,
        files=files,
        resources=counts,
        unattached=mapper.unattached,
        invalid=mapper.invalid,
    )


def is_fhir_json(data: bytes) -> bool:
    """True when JSON (or the first NDJSON line) is FHIR: an object with ``resourceType`` and no ``@context``."""
    for text in (data, data.split(b"\n", 1)[0]):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):  # (not JSON; decoding errors are ValueErrors too)
            continue
        return isinstance(doc, dict) and "resourceType" in doc and "@context" not in doc
    return False


def load_fhir_patient(path: Path, *, kb: KnowledgeBase | None = None) -> tuple[list[ox.Triple], ImportResult]:
    """Triples of a FHIR file for the pipeline; any file or resource error is an :class:`InputError`."""
    result = import_fhir([path], kb=kb)
    if result.errors:
        raise InputError(result.errors[0], problems=result.errors + result.invalid)
    if result.invalid:
        raise InvalidPatientData(result.invalid[0], problems=result.invalid)
    if not result.reports:
        raise InputError(f"{path}: no FHIR Patient data found")
    return result.triples, result
