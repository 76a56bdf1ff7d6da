"""Fuzzing in CI: a bounded budget of ``fuzz/fuzz_inputs.py`` over every target (Turtle, JSON-LD, FHIR
JSON and NDJSON, generated values, ``.rq`` files, command lines, raw HTTP to ``b12kg serve``) must give
0 tracebacks, 0 crashes, 0 hangs, 0 over-memory and no undocumented exit code. A long run is described
in fuzz/README.md. The oracles themselves are tested on inputs that must trip them."""

from __future__ import annotations

import importlib.util
import io
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUDGET = 1_200


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fuzz = _module("b12kg_fuzz_inputs", REPO / "fuzz" / "fuzz_inputs.py")


@pytest.mark.slow
def test_fuzz_budget_finds_nothing(tmp_path):
    fuzzer = fuzz.Fuzzer(seed=1, workdir=tmp_path, slots=2)
    try:
        elapsed = fuzzer.run(BUDGET)
    finally:
        fuzzer.close()
    out = io.StringIO()
    failed = fuzz.report(fuzzer, elapsed, out)
    print(out.getvalue())
    results = fuzzer.results
    assert sum(results.inputs.values()) == BUDGET
    assert set(results.inputs) == set(fuzz.TARGETS), results.inputs  # every target was reached
    # every seed ran as it is (the defects among them), then generated and mutated inputs
    assert not fuzzer.pending
    # the values generator varied the value: nearly every input held a B12 value not seen before
    assert len(results.values) >= 0.8 * results.inputs["values"], (len(results.values), results.inputs["values"])
    assert failed == 0, out.getvalue()


@pytest.fixture
def worker(tmp_path):
    w = fuzz.Worker(tmp_path, 4 * 2**30)
    yield w
    w.stop()


def test_a_worker_runs_commands_in_process_with_exit_code_and_peak(worker):
    outcome = worker.run(["recommend", str(REPO / "examples/patients/seed-case.ttl"), "--as-of", "2025-10-31"], 60)
    assert outcome["code"] == 0 and outcome["failure"] is None
    assert 30 * 2**20 < outcome["peak"] < 2**30
    outcome = worker.run(["recommend", "/nonexistent.ttl"], 60)
    assert outcome["code"] == 3 and "no such file" in outcome["stderr"]


def test_the_hang_oracle(worker):
    outcome = worker.run(["synth", "--patients", "1000000", "-o", "/dev/null"], 1.0)
    assert outcome == {"failure": "hang", "detail": "no answer within 1 s"}
    assert worker.run(["recommend", "/nonexistent.ttl"], 60)["code"] == 3  # replaced, and working


def test_the_crash_oracle(worker):
    assert worker.run(["recommend", "/nonexistent.ttl"], 60)["code"] == 3
    pid = worker.process.pid
    threading.Timer(1.0, lambda: __import__("os").kill(pid, signal.SIGSEGV)).start()
    outcome = worker.run(["synth", "--patients", "1000000", "-o", "/dev/null"], 30)
    assert outcome["failure"] == "crash" and "exited -11" in outcome["detail"], outcome


def test_the_memory_oracle(tmp_path):
    fuzzer = fuzz.Fuzzer.__new__(fuzz.Fuzzer)  # only the bookkeeping, none of the set-up
    fuzzer.results, fuzzer.lock, fuzzer.input_seconds, fuzzer.memory = fuzz.Results(), threading.Lock(), 60, 2**20
    w = fuzz.Worker(tmp_path, 4 * 2**30)
    try:
        fuzzer._command(w, "turtle", ["recommend", str(REPO / "examples/patients/seed-case.ttl"), "--as-of", "2025-10-31"])
    finally:
        w.stop()
    assert fuzzer.results.failures == {("turtle", "memory"): 1}


def test_the_http_hang_check_gives_up_on_a_silent_server():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            fuzz.exchange(port, b"GET / HTTP/1.1\r\n\r\n", 2.0, patience=0.5)
        assert time.monotonic() - started < 5
    finally:
        listener.close()
