"""Every ``b12kg`` command that docs/knowledge-engineers.md shows in a ``console`` block runs.

Each ``$ b12kg ...`` line is run as written (a trailing ``# comment`` dropped) in a folder where the
guide's placeholders exist: ``copy`` and ``path/to/copy`` are copies of the knowledge base,
``examples`` is the project's. A check or diff may report findings or changes (exit 0 or 1); nothing
may fail to run (exit 2 or more) or print a traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

GUIDE = REPO / "docs" / "knowledge-engineers.md"
KB_FOLDERS = ("ontology", "shapes", "queries", "schema")


def shown_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of each ``$ b12kg`` line inside a ```console block."""
    out, inside = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            inside = line.strip() == "```console"
            continue
        if inside and line.startswith("$ b12kg"):
            out.append((number, re.sub(r"\s+#.*$", "", line[2:]).strip()))
    return out


COMMANDS = shown_commands(GUIDE)


def test_the_guide_shows_commands():
    assert len(COMMANDS) >= 8
    assert any(c.startswith("b12kg diff") for _, c in COMMANDS)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("guide")
    for target in (root / "copy", root / "path" / "to" / "copy"):
        for folder in KB_FOLDERS:
            shutil.copytree(REPO / folder, target / folder)
    (root / "examples").symlink_to(REPO / "examples")
    return root


@pytest.mark.parametrize("line,command", COMMANDS, ids=[f"line{n}" for n, _ in COMMANDS])
def test_a_command_of_the_guide_runs(sandbox, line, command):
    args = shlex.split(command)
    assert args[0] == "b12kg"
    env = {k: v for k, v in os.environ.items() if k != "B12KG_HOME"}
    done = subprocess.run([sys.executable, "-m", "b12kg.cli", *args[1:]], cwd=sandbox, env=env,
                          capture_output=True, text=True, timeout=900)
    allowed = {0, 1} if args[1] in ("check", "diff") else {0}
    assert done.returncode in allowed, f"{GUIDE.name}:{line}: `{command}` exited {done.returncode}: {done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr
    assert done.stdout.strip() or args[1] == "diff" and "--output" in args
