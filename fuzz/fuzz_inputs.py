"""In-process fuzzing of b12kg's input paths: every failure must be a clean, documented error.

Targets (each input goes to one, in turn):

* ``rdf``    — a mutated example patient file (Turtle, N-Triples, JSON-LD) through ``load_patient``
               and, when it parses, ``recommend`` (validate, normalise, classify, derive, schedule);
* ``fhir``   — a mutated FHIR Bundle through ``import_fhir`` and, when it maps, ``recommend``;
* ``values`` — an example patient with a generated B12 value / unit / date through ``recommend``;
* ``param``  — a generated ``--param`` value for every parameterised research query (``run_query``);
* ``cli``    — generated command lines through ``b12kg.cli.main`` (exit code captured).

Mutations are a seeded byte-level mutator of our own (bit flips, byte and token insertion, deletion,
duplication, splicing of interesting tokens); generated values come from hypothesis strategies drawn
with a seeded random source. An outcome is *clean* when it returns, raises a ``B12kgError`` (or, for
the CLI, exits with a documented code other than 10). Anything else is a *traceback* and is printed
with the input that caused it.

    python fuzz/fuzz_inputs.py --budget 100000 --seed 1

prints a table of inputs and tracebacks per target, and exits 1 when there was any traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from b12kg import cohort  # noqa: E402
from b12kg.derive import recommend  # noqa: E402
from b12kg.errors import B12kgError, ExitCode  # noqa: E402
from b12kg.fhir import import_fhir  # noqa: E402
from b12kg.kb import KnowledgeBase  # noqa: E402
from b12kg.patient import PatientData, load_patient  # noqa: E402
from b12kg.store import EmbeddedStore  # noqa: E402

AS_OF = date(2025, 10, 31)
DOCUMENTED = {int(c) for c in ExitCode} - {int(ExitCode.INTERNAL)}
TOKENS = [b'"', b"'", b'"""', b"<", b">", b"{", b"}", b"[", b"]", b",", b";", b".", b"\\", b"\\u0000", b"\x00",
          b"\xff", b"\xc3\x28", b"^^", b"@en", b"_:b", b"a", b"-1", b"0", b"1e999", b"NaN", b"-0.0", b"9" * 40,
          b"2025-02-30", b"2025-13-01", b"9999-12-31", b"0001-01-01", b"pg/mL", b"pmol/L", b"ng/L", b"mg/dL",
          b"null", b"true", b"[]", b"{}", b'"resourceType"', b'"Observation"', b'"valueQuantity"', b"\n", b"#",
          b"PREFIX", b"@prefix", b"http://", b"urn:", b"file:///etc/passwd"]


class Mutator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self, data: bytes) -> bytes:
        buf = bytearray(data)
        for _ in range(self.rng.choice([1, 1, 2, 3, 5, 8])):
            op = self.rng.randrange(7)
            at = self.rng.randrange(len(buf) + 1)
            if op == 0 and buf:  # flip a bit
                i = self.rng.randrange(len(buf))
                buf[i] ^= 1 << self.rng.randrange(8)
            elif op == 1:  # insert a token
                buf[at:at] = self.rng.choice(TOKENS)
            elif op == 2 and buf:  # delete a span
                del buf[at : at + self.rng.randint(1, 16)]
            elif op == 3 and buf:  # duplicate a span
                span = bytes(buf[at : at + self.rng.randint(1, 64)])
                buf[self.rng.randrange(len(buf) + 1) : 0] = span
            elif op == 4 and buf:  # replace a byte
                buf[self.rng.randrange(len(buf))] = self.rng.randrange(256)
            elif op == 5:  # replace a number-looking byte run with a token
                digits = [i for i, c in enumerate(buf) if 48 <= c <= 57]
                if digits:
                    i = self.rng.choice(digits)
                    buf[i : i + 1] = self.rng.choice(TOKENS)
            else:  # truncate
                del buf[at:]
        return bytes(buf)


def _strings(max_size: int = 30):
    """Hypothesis strategy for a user value: any text, number-like, date-like, or an interesting token."""
    from hypothesis import strategies as st

    return st.one_of(
        st.text(max_size=max_size),
        st.from_regex(r"\A-?\d{1,6}(\.\d{0,4})?([eE][+-]?\d{1,4})?\Z"),
        st.from_regex(r"\A\d{4}-\d{2}-\d{2}\Z"),
        st.sampled_from([t.decode("latin-1") for t in TOKENS]),
    )


class Fuzzer:
    def __init__(self, seed: int, workdir: Path) -> None:
        self.rng = random.Random(seed)
        self.mutate = Mutator(self.rng)
        self.kb = KnowledgeBase(REPO)
        self.work = workdir
        self.counts: Counter = Counter()
        self.tracebacks: Counter = Counter()
        self.examples: dict[str, tuple[str, str]] = {}
        ex = REPO / "examples"
        self.rdf = [p for p in sorted((ex / "patients").iterdir()) if p.suffix in (".ttl", ".nt", ".jsonld")]
        self.fhir = sorted((ex / "fhir").glob("*.json"))
        self.store_dir = workdir / "store"
        store = EmbeddedStore(self.store_dir)
        cohort.load(store, sorted((ex / "patients").glob("*.ttl")))
        cohort.derive(store, as_of=AS_OF, kb=self.kb, shacl=False)
        store.close()
        self.store = EmbeddedStore(self.store_dir, read_only=True)
        self.queries = []
        for path in sorted((self.kb.queries_dir / "research").glob("*.rq")):
            text = path.read_text(encoding="utf-8")
            if cohort.query_parameters(text):
                self.queries.append((path.stem, text, cohort.query_parameters(text)))

    # ---------------------------------------------------------------------------- one input
    def _run(self, target: str, describe: str, action) -> None:
        self.counts[target] += 1
        try:
            action()
        except B12kgError:
            pass
        except Exception:  # a traceback: the finding
            key = f"{target}: {traceback.format_exc().strip().splitlines()[-1][:160]}"
            self.tracebacks[key] += 1
            self.examples.setdefault(key, (describe[:400], traceback.format_exc()))

    def _pipeline(self, path: Path) -> None:
        data = load_patient(path, kb=self.kb)
        recommend(data, as_of=AS_OF, kb=self.kb)

    def rdf_input(self) -> None:
        source = self.rng.choice(self.rdf)
        mutated = self.mutate(source.read_bytes())
        path = self.work / f"input{source.suffix}"
        path.write_bytes(mutated)
        self._run("rdf", f"{source.name} mutated: {mutated[:400]!r}", lambda: self._pipeline(path))

    def fhir_input(self) -> None:
        source = self.rng.choice(self.fhir)
        mutated = self.mutate(source.read_bytes())
        path = self.work / "input.json"
        path.write_bytes(mutated)

        def action() -> None:
            result = import_fhir([path], kb=self.kb)
            if self.rng.random() < 0.2:  # the full pipeline on a fraction (it is the slow part)
                self._pipeline(path)
            del result

        self._run("fhir", f"{source.name} mutated: {mutated[:400]!r}", action)

    def values_input(self, value: str, unit: str, day: str) -> None:
        text = (REPO / "examples/patients/seed-case.ttl").read_text(encoding="utf-8")
        esc = lambda s: s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")  # noqa: E731
        text = text.replace('"292"^^xsd:decimal', f'"{esc(value)}"^^xsd:decimal', 1)
        text = text.replace('b12:unit "pg/mL"', f'b12:unit "{esc(unit)}"', 1)
        text = text.replace('"2025-10-24"^^xsd:date', f'"{esc(day)}"^^xsd:date', 1)
        path = self.work / "values.ttl"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        self._run("values", f"value={value!r} unit={unit!r} date={day!r}", lambda: self._pipeline(path))

    def param_input(self, index: int, values: list[str]) -> None:
        name, text, declared = self.queries[index % len(self.queries)]
        params = dict(zip(declared, values))
        self._run("param", f"{name} {params!r}", lambda: cohort.run_query(self.store, text, params))

    def cli_words(self) -> list[str]:
        return ["recommend", "query", "export", "--as-of", "--format", "-f", "--store", "--endpoint",
                "--param", "--dataset", "--graph", "--reasoner", "--kb", "--help", str(self.store_dir),
                str(self.rdf[0]), str(self.fhir[0]), "due-in-window", "patient-evidence",
                "start=2025-01-01", "end=2026-01-01", "json", "text", "csv", "nq", "derived"]

    def cli_input(self, argv: list[str]) -> None:
        # stay read-only and local: no command that writes, starts a server or runs the slow check gate
        if any(a in ("serve", "check", "load", "derive", "synth", "import-fhir", "-o", "--out") for a in argv):
            argv = ["recommend", str(self.rdf[0]), *[a for a in argv if a.startswith("-") and a not in ("-o", "--out")]]
        self.counts["cli"] += 1
        out, err = io.StringIO(), io.StringIO()
        old = sys.argv
        sys.argv = ["b12kg", *argv]
        code: object = 0
        try:
            from b12kg.cli import main

            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main()
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            code = "traceback"
        finally:
            sys.argv = old
        if code not in DOCUMENTED or "Traceback" in err.getvalue():
            key = f"cli: exit {code}: {err.getvalue().strip().splitlines()[-1][:160] if err.getvalue().strip() else ''}"
            self.tracebacks[key] += 1
            self.examples.setdefault(key, (repr(argv), err.getvalue()[-2000:]))

    # ------------------------------------------------------------------------------ a run
    def run(self, budget: int, seconds: float | None = None, seed: int = 1) -> float:
        """Half the budget to the byte mutator (RDF and FHIR files), half to hypothesis (values,
        query parameters, command lines), in rounds so ``seconds`` can stop it between rounds."""
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hseed
        from hypothesis import strategies as st

        started = time.perf_counter()
        rounds = max(1, budget // 2000)
        per_round = budget // rounds
        for r in range(rounds):
            mutations = per_round // 2
            for _ in range(mutations):
                (self.rdf_input if self.rng.random() < 0.55 else self.fhir_input)()
            rest = per_round - mutations
            common = dict(database=None, deadline=None, phases=[Phase.generate],
                          suppress_health_check=list(HealthCheck))
            unit = st.one_of(st.sampled_from(["pg/mL", "pmol/L", "ng/L"]), _strings(10))

            @hseed(seed * 1000 + r)
            @settings(max_examples=max(1, rest // 6), **common)
            @given(_strings(), unit, st.one_of(st.just("2025-10-24"), _strings(12)))
            def values(v, u, d):
                self.values_input(v, u, d)

            @hseed(seed * 1000 + r)
            @settings(max_examples=max(1, rest // 2), **common)
            @given(st.integers(0, 50), st.lists(_strings(), min_size=3, max_size=3))
            def params(i, vs):
                self.param_input(i, vs)

            @hseed(seed * 1000 + r)
            @settings(max_examples=max(1, rest - rest // 6 - rest // 2), **common)
            @given(st.lists(st.one_of(st.sampled_from(self.cli_words()), _strings(20)), max_size=6))
            def cli(argv):
                self.cli_input(argv)

            values()
            params()
            cli()
            if seconds and time.perf_counter() - started > seconds:
                break
        return time.perf_counter() - started

    def close(self) -> None:
        self.store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=100_000, help="how many inputs (default 100,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long as well")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fuzzer = Fuzzer(args.seed, Path(tmp))
        elapsed = fuzzer.run(args.budget, args.seconds, seed=args.seed)
        fuzzer.close()
    total = sum(fuzzer.counts.values())
    print(f"| target | inputs | tracebacks |\n|---|---:|---:|")
    for target in ("rdf", "fhir", "values", "param", "cli"):
        bad = sum(n for k, n in fuzzer.tracebacks.items() if k.startswith(target + ":"))
        print(f"| {target} | {fuzzer.counts[target]:,} | {bad} |")
    print(f"| **all** | **{total:,}** | **{sum(fuzzer.tracebacks.values())}** |")
    print(f"\n{total:,} inputs in {elapsed:.0f} s ({total / elapsed:.0f}/s), seed {args.seed}")
    for key, (describe, tb) in fuzzer.examples.items():
        print(f"\n## {key} ({fuzzer.tracebacks[key]}×)\ninput: {describe}\n{tb}")
    return 1 if fuzzer.tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
