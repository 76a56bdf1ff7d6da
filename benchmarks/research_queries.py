"""How long each research query (queries/research/*.rq) takes on a derived cohort, as `b12kg query` runs it.

Usage:
    python benchmarks/research_queries.py --patients 10000                   # embedded store, built here
    python benchmarks/research_queries.py --store DIR                        # a derived store (built there if new)
    python benchmarks/research_queries.py --patients 10000 --backend virtuoso  # the tests' loopback Virtuoso
    python benchmarks/research_queries.py --store DIR --compare HEAD~1       # and the query files of a revision
    python benchmarks/research_queries.py --endpoint URL                     # an endpoint holding a derived cohort

Each run of a query is a new `b12kg query NAME -f csv` process (process start and CSV output included,
as a user or a script sees it); the table gives the median, min and max wall time over --runs, the
rows, and the process's peak RSS (for a remote backend: the client's only). A cohort is built with
`b12kg synth --seed 1`, `load` and `derive --as-of 2025-10-31 --no-shacl` (the synthetic dates lie
before that day). Parameters: the window of due-in-window is the --window-days after that day; the
patient of patient-evidence and the recommendation of recommendation-provenance are the first row of
due-in-window. With --compare REV the query files of git revision REV are timed too, and their CSV
output must be byte-identical to the current files' (a rewrite that changes an answer fails here).
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AS_OF = date(2025, 10, 31)
B12KG = [sys.executable, "-m", "b12kg.cli"]


def timed(command: list[str], out: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KB) of one process, its stdout written to ``out``."""
    with open(out, "wb") as f, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=f, stderr=err, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(command[3:])} failed: {err.read().decode().strip()}")
    return wall, usage.ru_maxrss


def first_rows(path: Path) -> tuple[int, dict[str, str] | None]:
    """How many rows a CSV result has, and its first row. Read as a stream: a child's peak RSS starts
    at this process's own when it is started, so this process stays small."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header, first, count = next(reader), None, 0
        for row in reader:
            first = first or dict(zip(header, row))
            count += 1
    return count, first


@contextmanager
def backend(args, work: Path):
    """The --store / --endpoint options of a derived cohort of the chosen backend."""
    if args.endpoint:  # e.g. `b12kg serve --store DIR`: queried as it is
        yield ["--endpoint", args.endpoint]
        return
    if args.backend == "embedded":
        store = Path(args.store) if args.store else work / "store"
        if not (store / "HEAD").exists():
            build(["--store", str(store)], args.patients, work)
        yield ["--store", str(store)]
        return
    sys.path.insert(0, str(REPO / "tests"))
    from servers import oxigraph_server, virtuoso_server

    folder = work / args.backend
    folder.mkdir()
    with (virtuoso_server if args.backend == "virtuoso" else oxigraph_server)(folder) as server:
        options = ["--endpoint", server.endpoint, "--update-endpoint", server.update_endpoint]
        build(options, args.patients, work, ["--replace", "batches"])  # the same graph, faster on a server
        yield options


def build(options: list[str], patients: int, work: Path, derive: tuple[str, ...] | list[str] = ()) -> None:
    cohort = work / "cohort.nt"
    steps = [["synth", "--patients", str(patients), "--seed", "1", "--out", str(cohort)],
             ["load", str(cohort), *options],
             ["derive", *options, "--as-of", AS_OF.isoformat(), "--no-shacl", *derive]]
    for step in steps:
        started = time.perf_counter()
        result = subprocess.run(B12KG + step, capture_output=True, text=True, cwd=REPO)
        if result.returncode != 0:
            sys.exit(f"b12kg {step[0]} failed: {result.stderr.strip()}")
        print(f"b12kg {step[0]}: {time.perf_counter() - started:.1f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000, help="cohort size when one is built here")
    parser.add_argument("--store", help="an embedded store already derived; one is built there (and kept) when "
                                        "DIR has no HEAD yet")
    parser.add_argument("--endpoint", help="a SPARQL endpoint already holding a derived cohort")
    parser.add_argument("--backend", choices=["embedded", "oxigraph", "virtuoso"], default="embedded")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window-days", type=int, default=30)
    parser.add_argument("--compare", metavar="REV", help="also time the query files of this git revision")
    parser.add_argument("--only", nargs="*", help="these query names only")
    args = parser.parse_args()
    if sum(bool(x) for x in (args.store, args.endpoint, args.backend != "embedded")) > 1:
        parser.error("give one of --store, --endpoint and --backend")
    names = sorted(p.stem for p in (REPO / "queries" / "research").glob("*.rq"))
    names = [n for n in names if not args.only or n in args.only]
    # due-in-window first: its first row gives the patient and recommendation of the per-patient queries
    names.sort(key=lambda n: n != "due-in-window")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="b12kg-research-")))
        options = stack.enter_context(backend(args, work))
        older = {}
        if args.compare:
            for name in names:
                shown = subprocess.run(["git", "show", f"{args.compare}:queries/research/{name}.rq"],
                                       capture_output=True, text=True, cwd=REPO)
                if shown.returncode == 0:
                    older[name] = work / f"{name}-{args.compare.replace('/', '_')}.rq"
                    older[name].write_text(shown.stdout, encoding="utf-8")
        window = [f"start={AS_OF.isoformat()}", f"end={(AS_OF + timedelta(days=args.window_days)).isoformat()}"]
        params: dict[str, list[str]] = {"due-in-window": window}
        table = []
        for name in names:
            extra = [a for p in params.get(name, []) for a in ("--param", p)]
            if name in ("patient-evidence", "recommendation-provenance") and name not in params:
                sys.exit(f"{name}: due-in-window gave no row to take a patient from; widen --window-days")
            runs, peak, out = [], 0, work / f"{name}.csv"
            for _ in range(args.runs):
                wall, rss = timed(B12KG + ["query", name, *options, "-f", "csv", *extra], out)
                runs.append(wall); peak = max(peak, rss)
            rows, first = first_rows(out)
            if name == "due-in-window" and first:
                params["patient-evidence"] = [f"patient={first['patient']}"]
                params["recommendation-provenance"] = [f"rec={first['rec']}"]
            row = [name, rows, statistics.median(runs), min(runs), max(runs), peak / 1024]
            if name in older:
                before, before_peak, before_out = [], 0, work / f"{name}-before.csv"
                for _ in range(args.runs):
                    wall, rss = timed(B12KG + ["query", str(older[name]), *options, "-f", "csv", *extra],
                                      before_out)
                    before.append(wall); before_peak = max(before_peak, rss)
                filecmp.clear_cache()  # its cache knows files by size and mtime, and these are rewritten
                if not filecmp.cmp(before_out, out, shallow=False):
                    sys.exit(f"{name}: the files of {args.compare} and of the working tree give different CSV")
                row += [statistics.median(before), before_peak / 1024]
            table.append(row)
    where = (f"embedded store {args.store}" if args.store else f"endpoint {args.endpoint}" if args.endpoint
             else f"{args.backend}, {args.patients:,} patients")
    print(f"research queries, {where}; `b12kg query NAME -f csv`, {args.runs} run(s) each\n")
    compare = f" | {args.compare} median s | {args.compare} peak RSS MB" if args.compare else ""
    print("| query | rows | median s | min s | max s | peak RSS MB" + compare + " |")
    print("|---|---:|---:|---:|---:|---:" + ("|---:|---:" if args.compare else "") + "|")
    for name, rows, med, low, high, rss, *before in table:
        tail = f" | {before[0]:.2f} | {before[1]:.0f}" if before else (" | – | –" if args.compare else "")
        print(f"| {name} | {rows:,} | {med:.2f} | {low:.2f} | {high:.2f} | {rss:.0f}{tail} |")


if __name__ == "__main__":
    main()
