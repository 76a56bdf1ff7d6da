"""Latency bookkeeping shared by the load benchmarks (endpoint_load.py, fhir_out_speed.py): timed calls
from several client threads, errors counted, a table of p50 and p99 per kind of request."""

from __future__ import annotations

import threading
import time
import urllib.error
from collections.abc import Callable


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile of ``values`` (seconds) in milliseconds, nearest rank; NaN when empty."""
    xs = sorted(values)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000 if xs else float("nan")


class Latencies:
    def __init__(self, names: list[str]) -> None:
        self.by_name: dict[str, list[float]] = {name: [] for name in names}
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def timed(self, name: str, call: Callable[[], object]) -> None:
        """Run ``call``; its wall time counts for ``name``, an HTTP or parse error as an error."""
        started = time.perf_counter()
        try:
            call()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            with self._lock:
                self.errors.append(f"{name}: {exc}")
            return
        with self._lock:
            self.by_name[name].append(time.perf_counter() - started)

    @property
    def every(self) -> list[float]:
        return [x for xs in self.by_name.values() for x in xs]

    def print_table(self, what: str) -> None:
        print(f"| {what} | answered | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for name, xs in self.by_name.items():
            print(f"| {name} | {len(xs)} | {percentile(xs, 50):.0f} | {percentile(xs, 99):.0f} |")
        every = self.every
        print(f"| **all** | {len(every)} | {percentile(every, 50):.0f} | {percentile(every, 99):.0f} |")


def run_clients(clients: int, work: Callable[[int], None]) -> float:
    """Run ``work(k)`` in ``clients`` threads; the wall time until all have returned."""
    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - started
