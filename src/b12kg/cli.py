"""The ``b12kg`` command line. It only wires the modules together.

Results go to stdout, diagnostics to stderr (one line per problem); exit codes are
:class:`b12kg.errors.ExitCode` and are listed in the README.
"""

from __future__ import annotations

import json
import os
import sys
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer

from b12kg.errors import B12kgError, EscapingWriter, ExitCode, OutputClosed, printable

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Vitamin B12 treatment after stroke, as a knowledge graph: what the guideline says for a patient, and why.",
)


def _fail(problems: list[str], code: ExitCode) -> None:
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    raise typer.Exit(int(code))


def _show_version(value: bool) -> None:
    if value:
        from b12kg import __version__

        typer.echo(f"b12kg {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Sub-commands below."""


# Option types in --help as users expect them (DATE, PATH, INTEGER, TEXT), instead of typer's <str> …
_METAVARS = {"as_of": "DATE", "start": "DATE", "end": "DATE"}


def _with_metavars(command) -> None:
    """Set each parameter's metavar from its annotation (typer shows ``<str>``, ``<path>``, ``<int>``)."""
    import datetime
    from pathlib import Path as _Path

    for param in getattr(command, "params", []):
        descriptor = getattr(param, "type_descriptor", None)
        if (descriptor is None or param.metavar is not None or getattr(param, "is_flag", False)
                or getattr(param, "param_type_name", "") == "argument"):  # an argument is shown by its name
            continue
        kind = descriptor.annotation
        if typing.get_origin(kind) is list:
            kind = (typing.get_args(kind) or (str,))[0]
        if param.name in _METAVARS or kind is datetime.date:
            param.metavar = _METAVARS.get(param.name, "DATE")
        elif kind is _Path:
            param.metavar = "PATH"
        elif kind is int:
            param.metavar = "INTEGER"
        elif kind is float:
            param.metavar = "NUMBER"
        elif kind is str:
            param.metavar = "TEXT"
    for sub in getattr(command, "commands", {}).values():
        _with_metavars(sub)


@app.command()
def recommend(
    patient_file: Annotated[Path, typer.Argument(help="Patient data: Turtle (.ttl), N-Triples (.nt), JSON-LD (.jsonld), or FHIR R4 JSON (a Bundle or resources) or NDJSON.")],
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Evaluation date, YYYY-MM-DD (default: today).")] = None,
    output: Annotated[str, typer.Option("--format", "-f", help="text, json, html (a self-contained page with a timeline plot), fhir (a FHIR R4 Bundle per patient), turtle or jsonld.")] = "text",
    reasoner: Annotated[str, typer.Option("--reasoner", help="rules (fast, default) or hermit (OWL 2 DL via owlready2).")] = "rules",
    kb_dir: Annotated[Optional[Path], typer.Option("--kb", help="Use the knowledge base in this folder (ontology/, shapes/, queries/).")] = None,
) -> None:
    """What the guideline recommends for the patient(s) in PATIENT_FILE, with evidence and provenance."""
    from b12kg.derive import recommend as run
    from b12kg.kb import KnowledgeBase
    from b12kg.reason import Reasoner
    from b12kg.report import OutputFormat, derived_graph, render_text, reports

    try:
        fmt = None if output in ("fhir", "html") else OutputFormat(output)
    except ValueError:
        _fail([f"--format: {output!r} is not one of text, json, html, fhir, turtle, jsonld"], ExitCode.USAGE)
    try:
        engine = Reasoner(reasoner)
    except ValueError:
        _fail([f"--reasoner: {reasoner!r} is not one of rules, hermit"], ExitCode.USAGE)
    from b12kg.store_cli import parse_as_of

    day = parse_as_of(as_of)
    kb = KnowledgeBase(kb_dir) if kb_dir else KnowledgeBase()
    evaluation = run(patient_file, as_of=day, reasoner=engine, kb=kb)
    if output == "html":
        from b12kg.page import render_html

        typer.echo(render_html(evaluation), nl=False)
        return
    if fmt in (OutputFormat.turtle, OutputFormat.jsonld):
        typer.echo(derived_graph(evaluation, fmt), nl=False)
        return
    docs = reports(evaluation)
    if fmt is None:
        from b12kg.fhir.write import bundles

        typer.echo(json.dumps(bundles(evaluation, docs), indent=2, ensure_ascii=False))
    elif fmt is OutputFormat.json:
        typer.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, ensure_ascii=False))
    else:
        typer.echo(printable("\n".join(render_text(d) for d in docs)), nl=False)


from b12kg.fhir.cli import cds_hooks_command, export_guideline_command, import_fhir_command  # noqa: E402

app.command("import-fhir")(import_fhir_command)
app.command("export-guideline")(export_guideline_command)

from b12kg.check_cli import check_command  # noqa: E402  (quality gate over the knowledge base)

app.command("check")(check_command)

from b12kg.diff_cli import diff_command  # noqa: E402  (what an edit changes for patients)

app.command("diff")(diff_command)


@app.command("docs")
def docs_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write ontology.html, individuals.html, decision.dot and decision.svg to.")] = Path("site/ontology"),
    kb_dir: Annotated[Optional[Path], typer.Option("--kb", help="Document the knowledge base in this folder (default: the project's).")] = None,
) -> None:
    """Generate the ontology documentation (pyLODE: every class, property and individual) and the
    decision diagram (Graphviz) from the ontology, so they cannot drift from it."""
    from b12kg.kb import KnowledgeBase
    from b12kg.ontodocs import build

    built = build(KnowledgeBase(kb_dir) if kb_dir else KnowledgeBase(), output)
    for path in built.files:
        typer.echo(f"wrote {path}")
    typer.echo(f"{built.classes} classes, {built.individuals} named individuals documented; "
               f"{built.edges} edges in the decision diagram", err=True)


from b12kg.store_cli import register as _register_store_commands  # noqa: E402

_register_store_commands(app)

app.command("cds-hooks")(cds_hooks_command)


def _internal(exc: BaseException) -> None:
    """A bug in b12kg: a one-line error and exit 10 (the traceback with B12KG_DEBUG=1)."""
    if os.environ.get("B12KG_DEBUG"):
        raise exc
    print(f"error: internal error ({type(exc).__name__}: {exc}); set B12KG_DEBUG=1 for details", file=sys.stderr)
    sys.exit(int(ExitCode.INTERNAL))


def main() -> None:
    """Entry point: user mistakes become one-line errors with a documented exit code, never a traceback.
    Everything written to stderr goes through :func:`~b12kg.errors.printable`."""
    if not isinstance(sys.stderr, EscapingWriter):
        sys.stderr = EscapingWriter(sys.stderr)
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of raising it.
        command = typer.main.get_command(app)
        _with_metavars(command)
        code = command(standalone_mode=False)
    except B12kgError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        sys.exit(int(exc.exit_code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except OutputClosed:  # the reader stopped reading (`b12kg export | head`): not an error of b12kg
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (Python flushes stdout at exit)
        sys.exit(int(ExitCode.OK))
    except (typer.BadParameter, typer.Abort) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(int(ExitCode.USAGE))
    except OSError as exc:
        if exc.filename is None:
            _internal(exc)
        # a path given on the command line that the file system refuses (too long, a loop, no access)
        name = str(exc.filename)
        shown = name if len(name) <= 120 else f"{name[:60]}…{name[-40:]}"
        print(f"error: {shown}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(int(ExitCode.INPUT))
    except Exception as exc:  # click usage errors (typer vendors click) and genuine bugs
        if hasattr(exc, "show") and hasattr(exc, "exit_code") and hasattr(exc, "format_message"):
            print(f"error: {exc.format_message()}", file=sys.stderr)
            sys.exit(int(ExitCode.USAGE))
        _internal(exc)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
