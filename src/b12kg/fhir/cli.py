"""The FHIR commands: ``b12kg import-fhir`` (FHIR R4 files and folders to patient-vocabulary Turtle or a
store), ``b12kg export-guideline`` (the guideline as FHIR) and ``b12kg cds-hooks`` (the CDS Hooks
service, :mod:`b12kg.cds_hooks`). Registered on the main app in
:mod:`b12kg.cli`; the mappings are :mod:`b12kg.fhir.read`, :mod:`b12kg.fhir.guideline`.
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
    Exit codes: 0 all imported, 2 usage error, 3 some files or resources could not be read, or no Patient
    in the input, 4 a value was refused (and nothing unreadable).
    """
    from b12kg.fhir.read import import_fhir
    from b12kg.kb import KnowledgeBase

    if out is not None and store is not None:
        raise typer.BadParameter("use either --out or --store, not both")
    result = import_fhir(paths, kb=KnowledgeBase(kb_dir) if kb_dir else None)
    if result.files and not result.reports and not result.errors:
        typer.echo(result.report_text(), err=True, nl=False)
        raise InputError(f"{', '.join(str(p) for p in paths)}: no FHIR Patient found: nothing to import "
                         "(the patients' resources need their Patient in the same import)")
    if store is not None:
        from b12kg.store import GRAPH_DERIVED, EmbeddedStore, dataset_graph

        if not result.triples:
            typer.echo(result.report_text(), err=True, nl=False)
            message = f"no patient data to import; the dataset {dataset!r} in {store} is unchanged"
            raise InputError(message, problems=[*result.errors, message])

        from b12kg import cohort

        graph = dataset_graph(dataset)
        target = EmbeddedStore(store)
        changed: list[str] = []
        try:
            # as b12kg load: the derived results of patients whose data changed are deleted
            had_derived = target.has_graph(GRAPH_DERIVED)
            kept = cohort.replace_datasets(target, [graph], lambda generation: generation.replace(graph, result.triples),
                                           changed=changed)
        finally:
            target.close()
        note = cohort.replaced_note(str(store), had_derived=had_derived, kept=kept, changed=len(changed), what="import")
        if note:
            typer.echo(note, err=True)
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


def export_guideline_command(
    output: Annotated[str, typer.Option("--format", "-f", help="fhir: a Bundle of the PlanDefinition and its ActivityDefinitions.")] = "fhir",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write to this file (default: stdout).")] = None,
    kb_dir: Annotated[Optional[Path], typer.Option("--kb", help="Export the knowledge base in this folder.")] = None,
) -> None:
    """The guideline itself as FHIR R4: a CPG-style PlanDefinition (one action per statement, with its
    applicability and evidence) and an ActivityDefinition per regimen and test, generated from the
    ontology. The FHIR output of recommend points at them by canonical URL. Exit codes: 0, 2 usage."""
    from b12kg.engine import Workspace
    from b12kg.fhir.guideline import guideline_bundle
    from b12kg.kb import KnowledgeBase

    if output != "fhir":
        raise typer.BadParameter(f"--format: {output!r} is not one of fhir")
    text = json.dumps(guideline_bundle(Workspace(KnowledgeBase(kb_dir) if kb_dir else KnowledgeBase())),
                      indent=2, ensure_ascii=False) + "\n"
    if out is not None:
        write_output(out, text)
    else:
        typer.echo(text, nl=False)

def cds_hooks_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (default loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")] = 8080,
    as_of: Annotated[Optional[str], typer.Option(
        "--as-of", help="Evaluation date, YYYY-MM-DD (default: the day of each request).")] = None,
    feedback: Annotated[Path, typer.Option(
        "--feedback", help="Append-only log of the cards issued and their feedback (N-Triples).")] = Path("cds-feedback.nt"),
    max_body: Annotated[int, typer.Option("--max-body-bytes", min=1024, help="Largest request accepted.")] = 8 * 1024 * 1024,
    evaluations: Annotated[int, typer.Option("--evaluations", min=1, max=64, help="Evaluations at once.")] = 2,
    allow_host: Annotated[Optional[list[str]], typer.Option(
        "--allow-host", help="A Host header to accept besides loopback names (repeat).")] = None,
    cors: Annotated[Optional[list[str]], typer.Option(
        "--cors", help="An origin allowed to call the service from a browser (repeat; '*' for any).")] = None,
    fhir_server: Annotated[Optional[list[str]], typer.Option(
        "--allow-fhir-server", help="A FHIR server URL prefix it may fetch missing prefetch from (repeat; default: none, "
                                    "so missing prefetch is 412).")] = None,
    kb_dir: Annotated[Optional[Path], typer.Option("--kb", help="Use the knowledge base in this folder.")] = None,
) -> None:
    """A CDS Hooks 2.0 service: b12-post-stroke (patient-view) and b12-order-check (order-select,
    order-sign), discovery at /cds-services, feedback at /cds-services/{id}/feedback.

    Patient data comes from the request's prefetch, or from its fhirServer (412 without either).
    Ctrl-C, SIGTERM and SIGHUP stop it. See docs/cds-hooks.md."""
    from b12kg.cds_hooks import CdsConfig, CdsServer
    from b12kg.kb import KnowledgeBase
    from b12kg.store_cli import parse_as_of

    day = parse_as_of(as_of) if as_of else None
    config = CdsConfig(as_of=day, feedback=feedback, max_body_bytes=max_body, evaluations=evaluations,
                       allowed_hosts=tuple(allow_host or ()), cors=tuple(cors or ()),
                       fhir_servers=tuple(fhir_server or ()),
                       kb=KnowledgeBase(kb_dir) if kb_dir else KnowledgeBase())
    server = CdsServer(config, host=host, port=port)
    server.start()
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: listening on {host}, not only on this machine", err=True)
    typer.echo(f"CDS Hooks service {server.url}; evaluation date {day or 'the day of each request'}; "
               f"feedback log {feedback}; Ctrl-C stops it", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
