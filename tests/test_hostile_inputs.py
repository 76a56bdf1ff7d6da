"""Inputs that once took b12kg down or made it lie (fuzz/defects.py): each ends with its documented exit
code and a one-line reason, loses nothing already stored, and stays under 1 GiB of memory.

Each command runs in its own process with 3 GiB of address space and 120 s at most, so that a
regression fails here instead of taking the machine down. (Times are measured by
benchmarks/hostile_inputs.py, not asserted.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PEAK_LIMIT = 2**30
ADDRESS_SPACE = 3 * 2**30


def _defects():
    spec = importlib.util.spec_from_file_location("b12kg_fuzz_defects", REPO / "fuzz" / "defects.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


defects = _defects()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return defects.build(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("case", defects.CASES, ids=[c.name for c in defects.CASES])
def test_hostile_input_ends_cleanly(case, inputs, tmp_path):
    store = defects.prepare_store(inputs, str(tmp_path / "store"), case.tags) if case.needs_store else None
    outcome = defects.run(defects.arguments(case, inputs, store), terminal=case.terminal, memory_limit=ADDRESS_SPACE)
    assert not defects.check(case, outcome), defects.check(case, outcome)
    assert outcome.peak_bytes < PEAK_LIMIT, f"peak memory {outcome.peak_bytes / 2**20:.0f} MiB"
    if case.after is not None:
        args, expected = case.after
        after = defects.run([a.format(dir=inputs, store=store) for a in args])
        assert after.code == 0 and expected in after.stdout, (after.stdout, after.stderr)


def test_every_message_is_one_line_per_problem(inputs):
    """One ``error:`` line per problem, nothing else on stderr for a refused patient file."""
    outcome = defects.run(["recommend", str(inputs / "value-27-digits.ttl"), "--as-of", defects.AS_OF])
    lines = outcome.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), lines


def test_the_size_limit_is_checked_before_reading(inputs, monkeypatch):
    """A file over the limit is refused from its size, before any parser reads it."""
    import os

    env = dict(os.environ, B12KG_MAX_INPUT_BYTES="1000")
    outcome = defects.run(["recommend", str(inputs / "seed.ttl"), "--as-of", defects.AS_OF], env=env)
    assert outcome.code == 3
    assert "seed.ttl: " in outcome.stderr and "over the 1000 bytes b12kg reads into memory" in outcome.stderr


def test_number_limits():
    from b12kg.inputs import number_problem

    assert number_problem("292") is None
    assert number_problem("999999999999999.999999999999999999") is None
    assert number_problem("0E+999999999") is None  # zero, however written
    assert "10^15" in number_problem("1e15")
    assert "18 digits" in number_problem("1e-19")
    assert "18 digits" not in (number_problem("1.5000000000000000000000000") or "")  # trailing zeros only
    assert "finite" in number_problem("NaN") and "finite" in number_problem("-Infinity")


def test_json_depth_check_counts_only_structure():
    """Brackets inside strings do not count; 100 levels pass, 101 do not, nor 101 left open."""
    from b12kg.errors import InputError
    from b12kg.inputs import MAX_JSON_DEPTH, check_json

    check_json(b'{"a": "' + b"[" * 10_000 + b'"}', Path("x.json"))
    check_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, Path("x.json"))
    with pytest.raises(InputError, match="nested deeper than"):
        check_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), Path("x.json"))
    check_json(b"[[[}", Path("x.json"))  # not JSON: left to the parser, which says where
    with pytest.raises(InputError, match="brackets left open"):  # which would recurse into them first
        check_json(b"[" * (MAX_JSON_DEPTH + 1), Path("x.json"))


def test_printable_escapes_what_drives_a_terminal():
    from b12kg.errors import printable

    assert printable("a\x1b[2Jb\rc\u202ed\te\nf\x9b") == "a\\x1b[2Jb\\x0dc\\u202ed\te\nf\\x9b"
