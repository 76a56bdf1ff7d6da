"""Hostile and careless inputs that once took b12kg down or made it lie, each as a command line with the
outcome it must have now: a documented exit code, a one-line reason, bounded memory and time.

Three users of this catalogue:

* ``tests/test_hostile_inputs.py`` runs every case and checks the exit code, the message, that nothing
  stored was lost, and that the command's peak memory stays under 1 GiB;
* ``benchmarks/hostile_inputs.py`` prints the time and peak memory of each case (medians of runs);
* ``fuzz/fuzz_inputs.py`` grows its seeds from these inputs.

The inputs are built from the project's own examples into a folder (:func:`build`); nothing here is
patient data from elsewhere.
"""

from __future__ import annotations

import json
import os
import pty
import re
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED_TTL = REPO / "examples" / "patients" / "seed-case.ttl"
SEED_FHIR = REPO / "examples" / "fhir" / "seed-case-bundle.json"
AS_OF = "2025-10-31"
MIB = 2**20


def _seed_ttl(value: str = "292", b12_date: str = "2025-10-24") -> bytes:
    text = SEED_TTL.read_text(encoding="utf-8")
    assert "b12:value 292 ;" in text and 'b12:effectiveDate "2025-10-24"^^xsd:date' in text
    text = text.replace("b12:value 292 ;", f"b12:value {value} ;")
    return text.replace('b12:effectiveDate "2025-10-24"^^xsd:date', f'b12:effectiveDate "{b12_date}"^^xsd:date', 1).encode()


def _seed_fhir(value_json: str | None = None, status: str | None = None) -> bytes:
    """The seed case's FHIR bundle with the B12 Observation's value written as the JSON text
    ``value_json`` (so that ``1e999999999`` stays a JSON number), or a MedicationAdministration status."""
    text = SEED_FHIR.read_text(encoding="utf-8")
    if value_json is not None:
        assert '"value": 292,' in text
        text = text.replace('"value": 292,', f'"value": {value_json},', 1)
    if status is not None:
        assert '"status": "completed",' in text
        text = text.replace('"status": "completed",', f'"status": {json.dumps(status)},', 1)
    return text.encode()


# triples about terms of the knowledge base: a second value for one of the guideline's B12 thresholds,
# and a product typed as another form of B12 (both once changed what b12kg printed as the guideline's)
_RESTATED_THRESHOLD = (b"<https://w3id.org/b12kg/guideline#threshold-b12-stroke-risk> "
                       b"<https://w3id.org/b12kg/ontology#thresholdValue> 250.0 .\n")
_RETYPED_PRODUCT = (b"<https://w3id.org/b12kg/ontology#cyanocobalamin> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> "
                    b"<https://w3id.org/b12kg/ontology#Hydroxocobalamin> .\n")


# patient data stating what the engine decides, or schema: a state that dropped the "renal function
# unknown" caution (cyanocobalamin was permitted with no eGFR on record), a canonical value that changed
# the result's band, and an axiom only HermiT would read
_SEED = "https://example.org/b12kg/seed-case#"
_STATE_ASSERTED = (f"<{_SEED}patient> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> "
                   "<https://w3id.org/b12kg/ontology#PatientWithKnownRenalStatus> .\n").encode()
_CANONICAL_VALUE = f'<{_SEED}b12> <https://w3id.org/b12kg/ontology#canonicalValue> 100.0 .\n'.encode()
_SCHEMA_AXIOM = (f"<{_SEED}stroke> <http://www.w3.org/2002/07/owl#sameAs> <{_SEED}other-stroke> .\n").encode()


def _deep_jsonld(depth: int) -> bytes:
    return (b'{"@id": "http://example.org/x", "http://example.org/p": ' * depth + b"1" + b"}" * depth)


def _deep_fhir(depth: int) -> bytes:
    return b'{"resourceType": "Patient", "extension": ' + b"[" * depth + b"]" * depth + b"}"


def _long_literal(size: int) -> bytes:
    return b'<http://example.org/s> <http://example.org/p> "' + b"a" * size + b'" .\n'


FILES = {
    "seed.ttl": lambda: _seed_ttl(),
    "fhir-1e999999999.json": lambda: _seed_fhir("1e999999999"),
    "fhir-1e308.json": lambda: _seed_fhir("1e308"),
    "fhir-27-digits.json": lambda: _seed_fhir("292.0000000000000000000000001"),
    "fhir-nan.json": lambda: _seed_fhir("NaN"),
    "fhir-escape-status.json": lambda: _seed_fhir(status="\x1b[31mred\x1b[0m"),
    "fhir-deep.json": lambda: _deep_fhir(50_000),
    "fhir-open-brackets.json": lambda: b'{"resourceType": "Patient", "extension": ' + b"[" * 5_000,
    "open-brackets.jsonld": lambda: b'{"@id": "http://example.org/x", "http://example.org/p": ' + b"[" * 5_000,
    "value-27-digits.ttl": lambda: _seed_ttl("292.0000000000000000000000001"),
    "value-2e20.ttl": lambda: _seed_ttl("200000000000000000000"),
    "value-1e308.ttl": lambda: _seed_ttl('"1e308"^^xsd:double'),
    "value-decimal-exponent.ttl": lambda: _seed_ttl('"-5e999999999"^^xsd:decimal'),
    "date-9999.ttl": lambda: _seed_ttl(b12_date="9999-12-30"),
    "restated-threshold.ttl": lambda: _seed_ttl() + _RESTATED_THRESHOLD,
    "retyped-product.nt": lambda: _RETYPED_PRODUCT,
    "state-asserted.ttl": lambda: _seed_ttl() + _STATE_ASSERTED,
    "state-asserted.nt": lambda: _STATE_ASSERTED,
    "canonical-value.ttl": lambda: _seed_ttl() + _CANONICAL_VALUE,
    "schema-axiom.ttl": lambda: _seed_ttl() + _SCHEMA_AXIOM,
    "deep-4000.jsonld": lambda: _deep_jsonld(4_000),
    "deep-50000.jsonld": lambda: _deep_jsonld(50_000),
    "literal-17mib.ttl": lambda: _long_literal(17 * MIB),
    "literal-17mib.nt": lambda: _long_literal(17 * MIB),
    "empty.ttl": lambda: b"",
    "prefixes-only.ttl": lambda: b"@prefix ex: <http://example.org/> .\n# no triples\n",
    "construct.rq": lambda: b"CONSTRUCT WHERE { ?s ?p ?o }\n",
    "latin1.rq": lambda: 'SELECT ?s WHERE { ?s ?p "caf\xe9" }\n'.encode("latin-1"),
    "count.rq": lambda: b"SELECT (COUNT(*) AS ?triples) WHERE { GRAPH ?g { ?s ?p ?o } }\n",
}


def build(folder: Path) -> Path:
    """Write every input file into ``folder`` (and make ``folder/out`` for outputs); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a-folder").mkdir(exist_ok=True)
    for name, make in FILES.items():
        path = folder / name
        if not path.exists():
            path.write_bytes(make())
    return folder


@dataclass(frozen=True)
class Case:
    """``b12kg ARGS`` (``{dir}``: the input folder, ``{store}``: a store holding the seed case as dataset
    ``seed``) must exit ``code`` with a line on stderr matching ``message``; ``after`` (args, text) is
    run afterwards and its stdout must contain text: nothing already stored was lost."""

    name: str
    args: tuple[str, ...]
    code: int
    message: str
    needs_store: bool = False
    after: tuple[tuple[str, ...], str] | None = None
    terminal: bool = False  #: stderr is a terminal (a pseudo-terminal), as for a user at a console
    no_control_characters: bool = False
    tags: tuple[str, ...] = field(default=())


_KEPT = (("query", "{dir}/count.rq", "--store", "{store}", "-f", "json"), '"triples": "23"')

CASES = [
    # numbers the store cannot compare: refused with the reason, never dropped as "no usable result"
    Case("fhir value 1e999999999 (import-fhir)", ("import-fhir", "{dir}/fhir-1e999999999.json"), 4,
         r"value 1E\+999999999 is 10\^15 or more in magnitude"),
    Case("fhir value 1e999999999 (recommend)", ("recommend", "{dir}/fhir-1e999999999.json", "--as-of", AS_OF), 4,
         r"value 1E\+999999999 is 10\^15 or more in magnitude"),
    Case("fhir value 1e308", ("recommend", "{dir}/fhir-1e308.json", "--as-of", AS_OF), 4, r"value 1E\+308 is 10\^15"),
    Case("fhir value with 25 decimals", ("recommend", "{dir}/fhir-27-digits.json", "--as-of", AS_OF), 4,
         r"value 292\.0000000000000000000000001 has more than 18 digits after the decimal point"),
    Case("fhir value NaN", ("import-fhir", "{dir}/fhir-nan.json"), 3, r"NaN is not a JSON number"),
    Case("turtle value with 25 decimals", ("recommend", "{dir}/value-27-digits.ttl", "--as-of", AS_OF), 4,
         r"value 292\.0000000000000000000000001: has more than 18 digits after the decimal point"),
    Case("turtle integer 2e20", ("recommend", "{dir}/value-2e20.ttl", "--as-of", AS_OF), 4,
         r"value 200000000000000000000: is 10\^15 or more in magnitude"),
    Case("turtle double 1e308", ("recommend", "{dir}/value-1e308.ttl", "--as-of", AS_OF), 4,
         r"value must be exactly one exact number"),
    Case("turtle decimal written 5e999999999", ("recommend", "{dir}/value-decimal-exponent.ttl", "--as-of", AS_OF), 4,
         r"value must be exactly one exact number .*\(got -5e999999999\)"),
    Case("stored integer 2e20 (derive without shapes)", ("derive", "--store", "{store}", "--no-shacl", "--as-of", AS_OF),
         4, r"value 200000000000000000000: is 10\^15 or more in magnitude", needs_store=True,
         tags=("load-2e20",)),
    # patient data about the knowledge base's own terms
    Case("a guideline threshold restated (recommend)", ("recommend", "{dir}/restated-threshold.ttl", "--as-of", AS_OF), 4,
         r"restated-threshold\.ttl: <https://w3id\.org/b12kg/guideline#threshold-b12-stroke-risk>: thresholdValue: "
         r"patient data may not describe a term of the knowledge base"),
    Case("a guideline threshold restated (load)", ("load", "--store", "{store}", "{dir}/restated-threshold.ttl",
                                                   "--dataset", "seed"), 4,
         r"restated-threshold\.ttl: <https://w3id\.org/b12kg/guideline#threshold-b12-stroke-risk>: thresholdValue",
         needs_store=True, after=_KEPT),
    Case("a product retyped (load, bulk)", ("load", "--store", "{store}", "{dir}/retyped-product.nt", "--dataset", "seed"),
         4, r"retyped-product\.nt: <https://w3id\.org/b12kg/ontology#cyanocobalamin>: type: patient data may not",
         needs_store=True, after=_KEPT),
    # patient data stating what the engine decides, or schema
    Case("a patient typed with a state (recommend)", ("recommend", "{dir}/state-asserted.ttl", "--as-of", AS_OF), 4,
         r"state-asserted\.ttl: patient <https://example\.org/b12kg/seed-case#patient>: type PatientWithKnownRenalStatus: "
         r"patient data may use only the patient vocabulary"),
    Case("a patient typed with a state (load, bulk)", ("load", "--store", "{store}", "{dir}/state-asserted.nt",
                                                       "--dataset", "seed"), 4,
         r"state-asserted\.nt: <https://example\.org/b12kg/seed-case#patient>: type PatientWithKnownRenalStatus: "
         r"patient data may use only", needs_store=True, after=_KEPT),
    Case("a result given a canonical value (recommend)", ("recommend", "{dir}/canonical-value.ttl", "--as-of", AS_OF),
         4, r"canonical-value\.ttl: patient <https://example\.org/b12kg/seed-case#patient>, "
            r"<https://example\.org/b12kg/seed-case#b12>: canonicalValue: patient data may use only"),
    Case("a schema axiom (recommend)", ("recommend", "{dir}/schema-axiom.ttl", "--as-of", AS_OF), 4,
         r"schema-axiom\.ttl: patient <https://example\.org/b12kg/seed-case#patient>, "
         r"<https://example\.org/b12kg/seed-case#stroke>: sameAs: patient data may not state class or property axioms"),
    Case("a schema axiom (load)", ("load", "--store", "{store}", "{dir}/schema-axiom.ttl", "--dataset", "seed"), 4,
         r"schema-axiom\.ttl: .*sameAs: patient data may not state", needs_store=True, after=_KEPT),
    # nesting, sizes
    Case("json-ld nested 4,000 deep", ("recommend", "{dir}/deep-4000.jsonld", "--as-of", AS_OF), 3,
         r"deep-4000\.jsonld: JSON nested deeper than 100 levels"),
    Case("json-ld nested 50,000 deep", ("recommend", "{dir}/deep-50000.jsonld", "--as-of", AS_OF), 3,
         r"JSON nested deeper than 100 levels"),
    Case("json-ld nested 50,000 deep (load)", ("load", "--store", "{store}", "{dir}/deep-50000.jsonld", "--dataset", "seed"),
         3, r"JSON nested deeper than 100 levels", needs_store=True, after=_KEPT),
    Case("fhir with 5,000 brackets left open", ("import-fhir", "{dir}/fhir-open-brackets.json"), 3,
         r"more than 100 brackets left open"),
    Case("json-ld with 5,000 brackets left open", ("recommend", "{dir}/open-brackets.jsonld", "--as-of", AS_OF), 3,
         r"more than 100 brackets left open"),
    Case("fhir nested 50,000 deep", ("import-fhir", "{dir}/fhir-deep.json"), 3, r"JSON nested deeper than 100 levels"),
    Case("literal of 17 MiB (recommend)", ("recommend", "{dir}/literal-17mib.ttl", "--as-of", AS_OF), 3,
         r"literal-17mib\.ttl: Turtle: a literal or IRI is too long"),
    Case("literal of 17 MiB (load)", ("load", "--store", "{store}", "{dir}/literal-17mib.nt", "--dataset", "seed"), 3,
         r"literal-17mib\.nt: N-Triples: a literal or IRI is too long", needs_store=True, after=_KEPT),
    # dates
    Case("--as-of 9999-12-31", ("recommend", "{dir}/seed.ttl", "--as-of", "9999-12-31"), 2,
         r"--as-of 9999-12-31: is outside the dates b12kg computes with"),
    Case("--as-of 0001-01-01 (derive)", ("derive", "--store", "{store}", "--as-of", "0001-01-01"), 2,
         r"--as-of 0001-01-01: is outside the dates", needs_store=True),
    Case("a result dated 9999-12-30", ("recommend", "{dir}/date-9999.ttl", "--as-of", AS_OF), 4,
         r"effectiveDate 9999-12-30: is outside the dates b12kg computes with"),
    # queries
    Case("query on a CONSTRUCT .rq", ("query", "{dir}/construct.rq", "--store", "{store}"), 3,
         r"construct\.rq: a CONSTRUCT query; b12kg query runs SELECT queries", needs_store=True),
    Case("query on a latin-1 .rq", ("query", "{dir}/latin1.rq", "--store", "{store}"), 3,
         r"latin1\.rq:1:29: not UTF-8 \(byte 0xe9\)", needs_store=True),
    # outputs
    Case("export -o a folder", ("export", "--store", "{store}", "-o", "{dir}/a-folder"), 3,
         r"a-folder: is a folder", needs_store=True),
    Case("export -o in a missing folder", ("export", "--store", "{store}", "-o", "{dir}/missing/x.nq"), 3,
         r"missing/x\.nq: cannot write \(No such file or directory\)", needs_store=True),
    Case("synth -o a folder", ("synth", "--patients", "2", "-o", "{dir}/a-folder"), 3, r"a-folder: is a folder"),
    Case("synth -o in a missing folder", ("synth", "--patients", "2", "-o", "{dir}/missing/x.nt"), 3,
         r"missing/x\.nt: cannot write"),
    Case("import-fhir -o a folder", ("import-fhir", str(SEED_FHIR), "-o", "{dir}/a-folder"), 3, r"a-folder: is a folder"),
    Case("import-fhir --report in a missing folder", ("import-fhir", str(SEED_FHIR), "--report", "{dir}/missing/r.json"), 3,
         r"missing/r\.json: cannot write"),
    # a load that would wipe a dataset
    Case("load an empty file", ("load", "--store", "{store}", "{dir}/empty.ttl", "--dataset", "seed"), 3,
         r"empty\.ttl: contains no RDF triples; nothing was loaded", needs_store=True, after=_KEPT),
    Case("load a file of prefixes only", ("load", "--store", "{store}", "{dir}/prefixes-only.ttl", "--dataset", "seed"), 3,
         r"prefixes-only\.ttl: contains no RDF triples", needs_store=True, after=_KEPT),
    Case("import-fhir of nothing into a store", ("import-fhir", "{dir}/fhir-nan.json", "--store", "{store}", "--dataset", "seed"),
         3, r"no patient data to import; the dataset 'seed' .* is unchanged", needs_store=True, after=_KEPT),
    # a path the file system refuses (found by the fuzzer: exit 10, "internal error (OSError …)")
    Case("recommend a file name too long", ("recommend", "1" * 300, "--as-of", AS_OF), 3, r"1{20}.*: File name too long"),
    Case("import-fhir a file name too long", ("import-fhir", "1" * 300), 3, r"File name too long"),
    Case("load a file name too long", ("load", "--store", "{store}", "{dir}/" + "1" * 300, "--dataset", "seed"), 3,
         r"File name too long", needs_store=True, after=_KEPT),
    Case("query a .rq name too long", ("query", "{dir}/" + "1" * 300 + ".rq", "--store", "{store}"), 3,
         r"File name too long", needs_store=True),
    # terminal escapes in echoed data
    Case("fhir status with terminal escapes (pipe)", ("import-fhir", "{dir}/fhir-escape-status.json"), 0,
         r"status .*red", no_control_characters=True),
    Case("fhir status with terminal escapes (terminal)", ("import-fhir", "{dir}/fhir-escape-status.json"), 0,
         r"status \\x1b\[31mred\\x1b\[0m", terminal=True, no_control_characters=True),
]


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_bytes: int  #: the command's peak resident memory


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "b12kg.cli", *args]


def run(args: list[str], *, terminal: bool = False, timeout: float = 120, env: dict | None = None,
        memory_limit: int | None = None) -> Outcome:
    """Run ``b12kg ARGS`` (stderr on a pseudo-terminal when ``terminal``); its peak resident memory
    from ``wait4``. Killed after ``timeout`` seconds (exit -9); ``memory_limit`` bytes of address space."""
    def limit() -> None:
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    master = slave = None
    if terminal:
        master, slave = pty.openpty()
    start = time.monotonic()
    process = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                               stderr=slave if terminal else subprocess.PIPE, preexec_fn=limit)
    if slave is not None:
        os.close(slave)
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def drain(read, name: str) -> None:
        while True:
            try:
                chunk = read()
            except OSError:  # a pseudo-terminal whose other end closed
                return
            if not chunk:
                return
            chunks[name].append(chunk)

    readers = [threading.Thread(target=drain, args=(lambda: process.stdout.read1(65536), "out"), daemon=True),
               threading.Thread(target=drain, args=((lambda: os.read(master, 65536)) if terminal
                                                    else (lambda: process.stderr.read1(65536)), "err"), daemon=True)]
    for reader in readers:
        reader.start()
    while True:  # reaped here, not by Popen, so that wait4 gives this command's own peak memory
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout:
            process.kill()
        time.sleep(0.02)
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(10)
    if master is not None:
        os.close(master)
    return Outcome(process.returncode, b"".join(chunks["out"]).decode("utf-8", "replace"),
                   b"".join(chunks["err"]).decode("utf-8", "replace"), time.monotonic() - start, usage.ru_maxrss * 1024)


def prepare_store(folder: Path, name: str, tags: tuple[str, ...] = ()) -> Path:
    """A fresh store in ``folder/name`` holding the seed case as dataset ``seed`` (and, for the tag
    ``load-2e20``, a bulk-loaded patient whose B12 value the store cannot compare)."""
    store = folder / name
    files = [str(build(folder) / "seed.ttl")]
    if "load-2e20" in tags:
        files = [str(folder / "value-2e20.ttl")]
    result = run(["load", "--store", str(store), *files, "--dataset", "seed"])
    if result.code != 0:
        raise RuntimeError(f"could not prepare the store: {result.stderr}")
    return store


def arguments(case: Case, folder: Path, store: Path | None) -> list[str]:
    return [a.format(dir=folder, store=store) for a in case.args]


def check(case: Case, outcome: Outcome) -> list[str]:
    """What is wrong with ``outcome`` for ``case`` (empty: as it must be)."""
    wrong = []
    if outcome.code != case.code:
        wrong.append(f"exit {outcome.code}, expected {case.code}")
    if not re.search(case.message, outcome.stderr):
        wrong.append(f"stderr does not match {case.message!r}: {outcome.stderr[-400:]!r}")
    if "Traceback" in outcome.stderr or "internal error" in outcome.stderr:
        wrong.append("a traceback or internal error")
    if case.no_control_characters and _CONTROL.search(outcome.stderr.replace("\r\n", "\n")):
        wrong.append(f"a control character on stderr: {outcome.stderr[-300:]!r}")
    return wrong
