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
