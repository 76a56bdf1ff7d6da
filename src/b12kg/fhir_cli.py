"""The ``b12kg import-fhir`` command: FHIR R4 files and folders to patient-vocabulary Turtle or a store.

Registered on the main app in :mod:`b12kg.cli`; the mapping itself is :mod:`b12kg.fhir`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from b12kg.errors import ExitCode, InputError, InvalidPatientData
from b12kg.inputs import write_output


def import_fhir_command(
    paths: Annotated[list[Path], typer.Argument(help="FHIR Bundle or resource JSON files, NDJSON bulk files (.ndjson), or folders of them.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the patient data as Turtle to this file (default: stdout).")] = None,
    store: Annotated[Optional[Path], typer.Option("--store", help="Load the patient data into the embedded store in this folder as a dataset (replaced atomically if it exists; this clears the derived graph); then run b12kg derive.")] = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name in the store.")] = "fhir",
    report: Annotated[Optional[Path], typer.Option("--report", help="Also write the import report as JSON to this file.")] = None,
    kb_dir: Annotated[Optional[Path], typer.Option("--kb", help="Use the code bindings of the knowledge base in this folder.")] = None,
) -> None:
    """Import FHIR R4 (Patient, Condition, Observation, MedicationAdministration, MedicationStatement,
    MedicationRequest) into the patient vocabulary, with provenance to each source resource.

    The import report (what was mapped, skipped and why, per patient) goes to stderr. Files that are
    not JSON, resources of an unknown type and resources invalid per fhir.resources are reported one per
    line; the other files still import and their output is still written, and the exit code is then 3.
    A value outside the numbers b12kg computes with (see docs/clinicians.md, "Input limits") is refused
    and reported, never written.
    Exit codes: 0 all imported, 2 usage error, 3 some files or resources could not be read, 4 a value was
    refused (and nothing unreadable).
    """
    from b12kg.fhir import import_fhir
    from b12kg.kb import KnowledgeBase

    if out is not None and store is not None:
        raise typer.BadParameter("use either --out or --store, not both")
    result = import_fhir(paths, kb=KnowledgeBase(kb_dir) if kb_dir else None)
    if store is not None:
        from b12kg.store import GRAPH_DERIVED, EmbeddedStore, dataset_graph

        if not result.triples:
            typer.echo(result.report_text(), err=True, nl=False)
            message = f"no patient data to import; the dataset {dataset!r} in {store} is unchanged"
            raise InputError(message, problems=[*result.errors, message])

        graph = dataset_graph(dataset)
        target = EmbeddedStore(store)
        try:
            # a new generation with the dataset replaced and no derived graph (see b12kg load)
            cleared = target.has_graph(GRAPH_DERIVED)
            with target.base_generation(replacing=[graph]) as generation:
                generation.replace(graph, result.triples)
        finally:
            target.close()
        if cleared:
            typer.echo(f"note: the derived graph {GRAPH_DERIVED} was cleared: its recommendations came from the "
                       f"data before this import; run b12kg derive --store {store} to derive them again", err=True)
    elif out is not None:
        write_output(out, result.turtle())
    else:
        typer.echo(result.turtle(), nl=False)
    typer.echo(result.report_text(), err=True, nl=False)
    if report is not None:
        write_output(report, json.dumps(result.report_dict(), indent=2, ensure_ascii=False) + "\n")
    if result.errors:
        raise InputError(result.errors[0], problems=result.errors + result.invalid)
    if result.invalid:
        raise InvalidPatientData(result.invalid[0], problems=result.invalid)
    if not result.files:
        raise typer.Exit(int(ExitCode.INPUT))
