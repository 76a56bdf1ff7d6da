"""FHIR Bulk Data out: the cohort of a store as NDJSON, one file per resource type
(``b12kg export --store DIR --format fhir-ndjson -o FOLDER``).

Each batch of patients goes through exactly the pipeline of ``recommend`` (and of ``derive``:
validation, normalisation, classification, derivation, schedule) at the derived graph's evaluation
date, and each patient's Bundle (:mod:`b12kg.fhir.write`) is split into its resources, appended to
``GuidanceResponse.ndjson``, ``RequestGroup.ndjson``, ``MedicationRequest.ndjson``,
``ServiceRequest.ndjson``, ``DetectedIssue.ndjson`` and ``Provenance.ndjson``. Batches run in worker processes (one per CPU), two per worker in flight, so memory is bounded by the
batch; the files are written beside the target folder and moved into place when complete, so a failed
export leaves no partial folder. References between the resources are ``urn:uuid:`` (the Bundle's
fullUrls), as Bulk Data resources keep them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyoxigraph as ox

from b12kg.derive import Evaluation
from b12kg.derive import evaluate as evaluate_pipeline
from b12kg.engine import Workspace
from b12kg.errors import InputError
from b12kg.fhir.write import patient_bundle
from b12kg.kb import KnowledgeBase
from b12kg.patient import PatientData
from b12kg.reason import Reasoner
from b12kg.report import patient_report
from b12kg.validate import validate_shapes, validate_values

TYPES = ("GuidanceResponse", "RequestGroup", "MedicationRequest", "ServiceRequest", "DetectedIssue", "Provenance")


def derivation_date(store, kb: KnowledgeBase) -> date:
    """The one evaluation date of the store's derived graph."""
    rows = store.select(kb.query("fhir/derivation-dates"))
    if not rows:
        raise InputError("the store has no derived graph: run b12kg derive first (or give --as-of)")
    if len(rows) > 1:
        dates = ", ".join(r["asOf"].value for r in rows)
        raise InputError(f"the derived graph holds several evaluation dates ({dates}): give --as-of")
    return date.fromisoformat(rows[0]["asOf"].value)


def batch_bundles(kb: KnowledgeBase, data: bytes, label: str, as_of: date) -> tuple[list[dict], list[str]]:
    """The Bundles of one batch (N-Triples of the patients and their facts), and its problems."""
    from b12kg.cohort import _without

    ws = Workspace(kb)
    ws.load_nt("patients", data)
    triples = list(ox.parse(data, format=ox.RdfFormat.N_TRIPLES))
    source = PatientData(path=Path(label), triples=triples)
    problems = validate_shapes(source, kb) + validate_values(ws, PatientData(path=Path(label), triples=[]), as_of)
    patients = [t.subject.value for t in triples if t.predicate.value == "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
                and t.object.value == "https://w3id.org/b12kg/ontology#Patient"]
    if problems:
        ws = Workspace(kb)
        ws.load_nt("patients", _without(triples, patients, problems))
    evaluate_pipeline(ws, as_of, Reasoner.rules)
    evaluation = Evaluation(workspace=ws, source=source, as_of=as_of, reasoner=Reasoner.rules)
    return [patient_bundle(ws, patient_report(evaluation, p)) for p in evaluation.patients], problems


def _batch_bundles(batch) -> list[dict]:
    """In a worker (or this process): the Bundles of one store batch (a picklable top-level function)."""
    from b12kg.cohort import _read_batch

    kb = KnowledgeBase(Path(batch.root))
    data = batch.data if batch.data is not None else _read_batch(kb, batch)
    return batch_bundles(kb, data, batch.label, batch.as_of)[0]


def export_ndjson(store, folder: Path, *, kb: KnowledgeBase | None = None, as_of: date | None = None,
                  batch_size: int = 50, workers: int | None = None,
                  progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write the store's cohort as FHIR NDJSON into ``folder`` (created; it must not exist), batches of
    ``batch_size`` patients in ``workers`` processes (default: one per CPU), written in batch order.
    Returns the number of resources per type."""
    from b12kg.cohort import _batches, _in_order, store_patients

    kb = kb or KnowledgeBase()
    workers = workers or os.cpu_count() or 1
    if folder.exists():
        raise InputError(f"{folder}: already exists; FHIR bulk export writes a new folder")
    if not folder.parent.is_dir():
        raise InputError(f"{folder.parent}: no such folder")
    as_of = as_of or derivation_date(store, kb)
    counts = dict.fromkeys(TYPES, 0)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        files = {kind: open(work / f"{kind}.ndjson", "w", encoding="utf-8") for kind in TYPES}
        try:
            batches = _batches(store, kb, store_patients(store, kb), batch_size, workers, root=str(kb.root), as_of=as_of,
                               reasoner=Reasoner.rules.value, shacl=True)
            for batch, bundles in _in_order(batches, workers, work=_batch_bundles):
                for bundle in bundles:
                    for entry in bundle["entry"]:
                        resource = entry["resource"]
                        files[resource["resourceType"]].write(json.dumps(resource, ensure_ascii=False,
                                                                         separators=(",", ":")) + "\n")
                        counts[resource["resourceType"]] += 1
                if progress:
                    progress(len(batch.patients))
        finally:
            for f in files.values():
                f.flush()
                os.fsync(f.fileno())
                f.close()
        os.rename(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return counts
