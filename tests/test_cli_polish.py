"""Command-line details a newcomer meets first: FHIR input with no Patient, the derive progress bar,
and the default of every --as-of option stated in its help."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import typer

from conftest import cli


def test_import_fhir_with_no_patient_is_an_error_naming_the_file(tmp_path):
    bundle = tmp_path / "observations-only.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "B12"}}}]}), encoding="utf-8")
    done = cli("import-fhir", str(bundle))
    assert done.returncode == 3
    assert f"error: {bundle}: no FHIR Patient found" in done.stderr
    assert done.stdout == ""  # no empty Turtle document passed off as an import
    done = cli("recommend", str(bundle), "--as-of", "2025-10-31")
    assert done.returncode == 3 and f"error: {bundle}: no FHIR Patient data found" in done.stderr


def _run_in_terminal(args: list[str]) -> tuple[int, str]:
    """Run ``b12kg ARGS`` with stderr on a pseudo-terminal (where the progress bar is drawn)."""
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="160", TERM="xterm")
    process = subprocess.Popen([sys.executable, "-m", "b12kg.cli", *args], stdout=subprocess.DEVNULL,
                               stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return process.wait(timeout=600), b"".join(chunks).decode("utf-8", errors="replace")


def test_the_derive_progress_bar_knows_its_total_and_shows_rate_and_time_left(tmp_path):
    cohort, store = tmp_path / "cohort.nt", tmp_path / "store"
    assert cli("synth", "--patients", "3000", "--seed", "5", "-o", str(cohort)).returncode == 0
    assert cli("load", str(cohort), "--store", str(store)).returncode == 0
    code, screen = _run_in_terminal(["derive", "--store", str(store), "--as-of", "2025-10-31", "--no-shacl",
                                     "--batch-size", "500", "--workers", "1"])
    assert code == 0, screen
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert re.search(r"\b\d+/3000\b", text), text[-2000:]
    assert "/?" not in text
    assert re.search(r"[\d,]+ patients/s", text), text[-2000:]
    assert re.search(r"eta\s+(\d+:\d\d:\d\d|-:--:--)", text), text[-2000:]


def _commands(group) -> list:
    out = []
    for command in group.commands.values():
        out += _commands(command) if hasattr(command, "commands") else [command]
    return out


def test_every_as_of_option_states_its_default():
    from b12kg.cli import app

    options = [(c.name, p) for c in _commands(typer.main.get_command(app)) for p in c.params if p.name == "as_of"]
    assert len(options) >= 6
    for name, param in options:
        assert re.search(r"default", param.help or "", re.I), f"b12kg {name} --as-of: {param.help!r}"


def test_recommend_help_lists_fhir():
    done = cli("recommend", "--help")
    assert "FHIR R4 JSON" in re.sub(r"[\s│]+", " ", done.stdout)

