"""Command-line commands for cohorts: load, derive, compact, query, export, synth, serve.

Each takes ``--store DIR`` (embedded) or ``--endpoint URL [--update-endpoint URL]`` (any SPARQL 1.1
store; ``--user``, ``--password`` or ``B12KG_PASSWORD``, ``--auth basic|digest``). Progress bars go to
stderr and only when it is a terminal.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer

from b12kg.errors import ExitCode, InputError, UsageError, reader_may_stop
from b12kg.inputs import check_evaluation_date, replacing

StoreDir = Annotated[Optional[Path], typer.Option("--store", help="Embedded store folder (created by load).")]
Endpoint = Annotated[Optional[str], typer.Option("--endpoint", help="SPARQL 1.1 query endpoint URL.")]
UpdateEndpoint = Annotated[Optional[str], typer.Option("--update-endpoint", help="SPARQL 1.1 update endpoint URL (default: --endpoint).")]
User = Annotated[Optional[str], typer.Option("--user", help="User for the endpoint.")]
Password = Annotated[Optional[str], typer.Option("--password", help="Password (or set B12KG_PASSWORD).")]
Auth = Annotated[str, typer.Option("--auth", help="basic or digest HTTP authentication.")]


def _open(store, endpoint, update_endpoint, user, password, auth, *, read_only=False):
    from b12kg.store import open_store

    if auth not in ("basic", "digest"):
        raise InputError(f"--auth: {auth!r} is not one of basic, digest")
    return open_store(store=store, endpoint=endpoint, update_endpoint=update_endpoint, user=user,
                      password=password or os.environ.get("B12KG_PASSWORD"), auth=auth, read_only=read_only)


@contextmanager
def _progress(description: str, total: int | None, unit: str = "items"):
    """A rich progress bar on stderr when it is a terminal (done/total, rate, elapsed and time left);
    otherwise a no-op. Yields (advance(n), set_total(n))."""
    if not sys.stderr.isatty():
        yield (lambda n: None), (lambda n: None)
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:,.0f} {unit}/s" if task.speed else f"- {unit}/s")

    with Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), Rate(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(),
                  console=Console(file=getattr(sys.stderr, "raw", sys.stderr)), transient=True) as bar:
        task = bar.add_task(description, total=total, visible=total is not None)  # shown once the total is known
        yield (lambda n: bar.advance(task, n)), (lambda n: bar.update(task, total=n, visible=True))


def parse_as_of(value: str | None) -> date:
    """The ``--as-of`` option of every command: YYYY-MM-DD, or today when not given."""
    if value is None:
        return date.today()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--as-of: {value!r} is not a date (use YYYY-MM-DD)") from None
    check_evaluation_date(day)
    return day


def load_command(
    files: Annotated[list[Path], typer.Argument(help="Patient files: Turtle (.ttl), N-Triples (.nt), JSON-LD (.jsonld).")],
    store: StoreDir = None, endpoint: Endpoint = None, update_endpoint: UpdateEndpoint = None,
    user: User = None, password: Password = None, auth: Auth = "basic",
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset name for a single file (default: the file name).")] = None,
) -> None:
    """Load patient datasets into a store; loading a dataset again replaces it.

    It also deletes derived results that came from the data it replaces. The embedded store (--store)
    keeps the results of patients whose input data the load leaves as it was, so that the next derive
    evaluates only the others (unless most patients changed: then it clears the derived graph). A
    remote store (--endpoint) deletes the results of every patient of the loaded datasets. Run b12kg
    derive again."""
    from b12kg import cohort

    from b12kg.store import GRAPH_DERIVED, EmbeddedStore

    s = _open(store, endpoint, update_endpoint, user, password, auth)
    try:
        # embedded: a load makes a new generation without the derived graph; remote: it deletes the
        # derived results of the loaded datasets' patients
        cleared = s.has_graph(GRAPH_DERIVED)
        embedded = isinstance(s, EmbeddedStore)
        changed: list[str] = []
        with _progress("loading", len(files), "files") as (advance, _):
            loaded = cohort.load(s, files, dataset=dataset, progress=advance, changed=changed)
        kept = embedded and s.has_graph(GRAPH_DERIVED)
    finally:
        s.close()
    for graph in loaded:
        typer.echo(f"loaded {graph}", err=True)
    note = cohort.replaced_note(str(store), had_derived=cleared, kept=kept, changed=len(changed)) if embedded else None
    if note:
        typer.echo(note, err=True)
    elif cleared and not embedded:
        typer.echo(f"note: the derived results of the loaded datasets' patients were deleted from {GRAPH_DERIVED}: "
                   f"they came from the data before this load; run b12kg derive --endpoint {endpoint} to derive "
                   f"them again", err=True)


def derive_command(
    store: StoreDir = None, endpoint: Endpoint = None, update_endpoint: UpdateEndpoint = None,
    user: User = None, password: Password = None, auth: Auth = "basic",
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Evaluation date, YYYY-MM-DD (default: today).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Patients evaluated together.")] = 1_000,  # cohort.DEFAULT_BATCH
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Processes evaluating batches (default: one per CPU).")] = None,
    shacl: Annotated[bool, typer.Option("--shacl/--no-shacl", help="Validate patients against the SHACL shapes (slow on large cohorts); unit and date checks always run.")] = True,
    kb_dir: Annotated[Optional[Path], typer.Option("--kb", help="Knowledge base folder to use.")] = None,
    replace: Annotated[str, typer.Option("--replace", help=(
        "Remote stores: atomic (default; one MOVE at the end, a stopped run leaves the old graph) or batches "
        "(each batch of patients replaced in one request: for cohorts too large for one server transaction)."))] = "atomic",
    full: Annotated[bool, typer.Option("--full", help="Evaluate every patient, even those whose results the embedded store can keep.")] = False,
) -> None:
    """Derive every patient's recommendations with provenance; replaces the derived graph atomically
    (on a remote store with --replace batches: patient by patient).

    On the embedded store (--store) a derive with the same --as-of, knowledge base and options as the
    last one evaluates only the patients without results: those whose data a load changed, new ones,
    and those left out for invalid data. --full evaluates everyone."""
    from b12kg import cohort
    from b12kg.kb import KnowledgeBase

    day = parse_as_of(as_of)
    if replace not in cohort.REPLACE_MODES:
        raise UsageError(f"--replace: {replace!r} is not one of {', '.join(cohort.REPLACE_MODES)}")
    if replace == "batches" and store is not None:
        raise UsageError("--replace batches is for remote stores (--endpoint); the embedded store (--store) "
                         "replaces the derived graph atomically at any size")
    kb = KnowledgeBase(kb_dir) if kb_dir else KnowledgeBase()
    s = _open(store, endpoint, update_endpoint, user, password, auth)
    try:
        with _progress("deriving", None, "patients") as (advance, set_total):
            result = cohort.derive(s, as_of=day, kb=kb, batch_size=batch_size, shacl=shacl, workers=workers,
                                   progress=advance, replace=replace, on_total=set_total, full=full)
    finally:
        s.close()
    for problem in result.problems:
        typer.echo(f"error: {problem}", err=True)
    if result.full:
        typer.echo(f"evaluated every patient ({result.full})", err=True)
        triples = f"{result.triples} triples in urn:b12kg:graph:derived"
    else:
        typer.echo(f"evaluated {result.patients - result.kept} patient(s) without results; kept the results of "
                   f"{result.kept} whose data and settings had not changed since the last derive (--full: everyone)",
                   err=True)
        triples = f"{result.triples} triples derived for the patients evaluated, added to urn:b12kg:graph:derived"
    typer.echo(f"derived {result.evaluated} of {result.patients} patient(s) at {day.isoformat()}: "
               f"{result.in_scope} in scope, {triples}", err=True)
    if result.problems:
        typer.echo(f"error: {result.patients - result.evaluated} patient(s) left out for invalid data", err=True)
        raise typer.Exit(int(ExitCode.INVALID_DATA))


def compact_command(
    store: Annotated[Path, typer.Option("--store", help="Embedded store folder (created by load).")],
) -> None:
    """Compact the embedded store for faster whole-cohort queries; the data do not change.

    load and derive write the store with bulk loads and leave it as written; compacting it makes
    queries that sort or scan the cohort (blocked-decisions, due-in-window) faster, by up to 40 % at
    100,000 patients. It writes a compacted copy as a new generation and switches to it, as a load
    does: it takes under a tenth of a full derive's time and, while it runs, free disk space about the
    store's size. Run it after a derive whose store research tools will query; a load or derive after
    it writes uncompacted data again, and derive keeps evaluating only what changed."""
    import time

    from b12kg.store import EmbeddedStore

    EmbeddedStore(store, read_only=True).close()  # a folder without a store is an error, not a new store
    start = time.perf_counter()
    with EmbeddedStore(store) as s:
        old, new = s.compact()
    typer.echo(f"compacted {store}: {old} -> {new} in {time.perf_counter() - start:.1f} s", err=True)


def query_command(
    query: Annotated[str, typer.Argument(help="A research query name (queries/research/NAME.rq) or a .rq file.")],
    store: StoreDir = None, endpoint: Endpoint = None, update_endpoint: UpdateEndpoint = None,
    user: User = None, password: Password = None, auth: Auth = "basic",
    param: Annotated[Optional[list[str]], typer.Option("--param", help="NAME=VALUE, as declared in the query header.")] = None,
    output: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """Run a SELECT query on the store; parameters are bound as typed RDF terms, never pasted."""
    from b12kg import cohort
    from b12kg.kb import KnowledgeBase

    if output not in ("table", "csv", "json"):
        raise InputError(f"--format: {output!r} is not one of table, csv, json")
    params = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InputError(f"--param {item!r}: use NAME=VALUE")
        params[name] = value
    source, text = cohort.resolve_query(KnowledgeBase(), query)
    s = _open(store, endpoint, update_endpoint, user, password, auth, read_only=store is not None)
    try:
        with reader_may_stop():
            if output == "table":  # (a table needs every row for its column widths)
                cohort.print_table(*cohort.run_query(s, text, params, source=source))
            else:  # rows written as the store evaluates them
                cohort.write_rows(*cohort.stream_query(s, text, params, source=source), output, sys.stdout)
            sys.stdout.flush()
    finally:
        s.close()


def export_command(
    store: StoreDir = None, endpoint: Endpoint = None, update_endpoint: UpdateEndpoint = None,
    user: User = None, password: Password = None, auth: Auth = "basic",
    graph: Annotated[Optional[str], typer.Option("--graph", help="derived, ontology, dataset:NAME, a graph IRI, or all (default).")] = None,
    output: Annotated[str, typer.Option("--format", "-f", help="nq, trig (whole store) or ttl, nt (one graph); fhir-ndjson: the cohort's recommendations as FHIR Bulk Data NDJSON, one file per resource type, into the new folder given by -o.")] = "nq",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write to this file instead of stdout (fhir-ndjson: this new folder).")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="fhir-ndjson only: evaluation date, YYYY-MM-DD (default: the derived graph's).")] = None,
    expand_provenance: Annotated[bool, typer.Option("--expand-provenance", help="Add to the derived graph what its lean form leaves to joins: each finding's derivation, guideline statement, evidence and patient facts (queries/research/expand/).")] = False,
) -> None:
    """Export the store, or one graph of it; or its cohort's recommendations as FHIR NDJSON."""
    from b12kg import cohort
    from b12kg.kb import KnowledgeBase

    if expand_provenance and output == "fhir-ndjson":
        raise InputError("--expand-provenance is for the RDF formats (nq, trig, ttl, nt)")
    if output == "fhir-ndjson":
        _export_fhir(store, endpoint, update_endpoint, user, password, auth, out, as_of)
        return
    if as_of is not None:
        raise InputError("--as-of is for --format fhir-ndjson")
    if output not in cohort.EXPORT_FORMATS:
        raise InputError(f"--format: {output!r} is not one of {', '.join([*cohort.EXPORT_FORMATS, 'fhir-ndjson'])}")
    name = cohort.graph_alias(graph)
    expand = KnowledgeBase() if expand_provenance else None
    s = _open(store, endpoint, update_endpoint, user, password, auth, read_only=store is not None)
    try:
        if out is None:
            with reader_may_stop():
                cohort.export(s, graph=name, fmt=output, output=sys.stdout.buffer, expand=expand)
                sys.stdout.buffer.flush()
        else:
            with replacing(out) as f:
                cohort.export(s, graph=name, fmt=output, output=f, expand=expand)
    finally:
        s.close()


def _export_fhir(store, endpoint, update_endpoint, user, password, auth, out: Optional[Path], as_of: Optional[str]) -> None:
    from b12kg.fhir.bulk import export_ndjson
    from b12kg.kb import KnowledgeBase

    if out is None:
        raise InputError("--format fhir-ndjson writes one file per resource type: give -o FOLDER (a new folder)")
    day = parse_as_of(as_of) if as_of else None
    s = _open(store, endpoint, update_endpoint, user, password, auth, read_only=store is not None)
    try:
        counts = export_ndjson(s, out, kb=KnowledgeBase(), as_of=day)
    finally:
        s.close()
    typer.echo("wrote " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + f" to {out}", err=True)


def synth_command(
    patients: Annotated[int, typer.Option("--patients", min=1, help="How many patients.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same cohort.")] = 1,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Dates are drawn before this day (default 2025-10-31).")] = "2025-10-31",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="N-Triples file to write (default: stdout).")] = None,
) -> None:
    """Write a deterministic synthetic cohort (N-Triples) covering every scenario dimension."""
    from b12kg.synth import generate, generate_file

    day = parse_as_of(as_of)
    if out:
        generate_file(out, patients=patients, seed=seed, as_of=day)
        typer.echo(f"wrote {patients} patients to {out}", err=True)
    else:
        with reader_may_stop():
            generate(sys.stdout, patients=patients, seed=seed, as_of=day)
            sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("load")(load_command)
    app.command("derive")(derive_command)
    app.command("compact")(compact_command)
    app.command("query")(query_command)
    app.command("export")(export_command)
    app.command("synth")(synth_command)
    app.command("serve")(serve_command)


def serve_command(
    store: Annotated[Path, typer.Option("--store", help="Embedded store folder to serve (read-only).")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (default loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")] = 7878,
    timeout: Annotated[int, typer.Option("--timeout", min=1, help="Query timeout in seconds.")] = 30,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most rows (or triples) a query returns.")] = 10_000,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Query worker processes.")] = 2,
    max_query_bytes: Annotated[int, typer.Option("--max-query-bytes", min=1024, help="Largest query accepted.")] = 65536,
    max_memory: Annotated[int, typer.Option("--max-memory", min=256, help="Address space of a worker, in MB.")] = 4096,
    allow_host: Annotated[Optional[list[str]], typer.Option(
        "--allow-host", help="A Host header to accept besides loopback names (repeat).")] = None,
    cors: Annotated[Optional[list[str]], typer.Option(
        "--cors", help="An origin allowed to call the endpoint from a browser (repeat; '*' for any).")] = None,
) -> None:
    """Serve the store as a read-only SPARQL 1.1 endpoint, a named-query web API and a query page.

    It serves the store as it is when it starts: restart it after a load or derive. Ctrl-C, SIGTERM
    and SIGHUP stop it."""
    from b12kg.serve import Endpoint, network_isolated

    endpoint = Endpoint(store, host=host, port=port, timeout=timeout, limit=limit, workers=workers,
                        max_query_bytes=max_query_bytes, max_memory_mb=max_memory,
                        allowed_hosts=tuple(allow_host or ()), cors=tuple(cors or ()))
    try:
        endpoint.start()
        assert endpoint.server is not None
        server = endpoint.server

        def stop(signum, frame):  # until uvicorn's own handlers take over: a signal before serving begins
            server.should_exit = True

        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, stop)
        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"warning: listening on {host}, not only on this machine", err=True)
        isolated = all(network_isolated(pid) for pid in endpoint.worker_pids)
        typer.echo(f"SPARQL endpoint {endpoint.url} (query page http://{host}:{endpoint.port}/, named queries "
                   f"/queries); timeout {timeout} s, at most {limit} rows, {workers} worker(s)"
                   f"{', each without network access' if isolated else ''}; Ctrl-C stops it", err=True)
        endpoint.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        endpoint.stop()
