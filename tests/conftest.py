"""Shared fixtures: the knowledge base, the example patients, the shared FHIR data, temp KB copies."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from b12kg.kb import KnowledgeBase

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "patients"
SHARED = REPO.parent / "shared"
SEED_AS_OF = date(2025, 10, 31)


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return KnowledgeBase(REPO)


@pytest.fixture
def kb_copy(tmp_path: Path) -> KnowledgeBase:
    """A private copy of ontology/, shapes/, queries/ and schema/ that a test may edit."""
    for folder in ("ontology", "shapes", "queries", "schema"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return KnowledgeBase(tmp_path)


def ontology_graph(kb: KnowledgeBase):
    """Every ontology module of ``kb`` parsed into one rdflib graph (the imports closure)."""
    import rdflib

    graph = rdflib.Graph()
    for path in kb.ontology_files.values():
        graph.parse(path, format="turtle")
    return graph


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the shared folder must sit beside the repository")
    return SHARED


def require_binary(name: str, install_hint: str) -> None:
    """Skip locally when a binary is missing, with how to install it; in CI (CI=true) fail instead."""
    import os

    if shutil.which(name) is None:
        message = f"{name} not found: {install_hint}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)


def cli(*args: str, cwd: Path | None = None):
    """``b12kg ARGS`` in a fresh interpreter; its exit code, stdout and stderr (a subprocess.CompletedProcess)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "b12kg.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def run_killed_before_head(store: Path, *args: str, partial_head: bytes | None = None):
    """Run ``b12kg ARGS --store STORE`` in a subprocess that SIGKILLs itself where it would switch
    HEAD: the new generation is complete on disk, HEAD still names the old one. With
    ``partial_head`` it first writes those bytes to the temporary HEAD file, as a kill in the middle
    of writing it would leave them."""
    import subprocess
    import sys

    code = ("import os, signal, sys\n"
            "import b12kg.store as s\n"
            "def die(root, *a):\n"
            "    if PARTIAL is not None:\n"
            "        (root / 'HEAD.tmp').write_bytes(PARTIAL)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "s._write_head = die\n"
            "from b12kg.cli import main\n"
            "sys.argv = ['b12kg', *sys.argv[1:]]\n"
            "main()\n").replace("PARTIAL", repr(partial_head))
    return subprocess.run([sys.executable, "-c", code, *args, "--store", str(store)],
                          capture_output=True, text=True, timeout=300)
