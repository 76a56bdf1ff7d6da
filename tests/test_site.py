"""The documentation site: `mkdocs build --strict` (a broken link or a missing page fails the build),
its generated reference pages cover what they claim to, and the links of the README resolve."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHARED


def test_the_source_article_copy_equals_the_shared_file():
    copy = (REPO / "docs" / "source-article.md").read_text(encoding="utf-8")
    text = copy.split("```text\n", 1)[1].rsplit("\n```", 1)[0]
    assert text == (SHARED / "source" / "b12-post-stroke-guideline.txt").read_text(encoding="utf-8").rstrip("\n")


def test_every_relative_link_of_the_readme_resolves():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = [t for t in re.findall(r"\]\(([^)#\s]+)", readme) if "://" not in t]
    assert links
    missing = [t for t in links if not (REPO / t).exists()]
    assert missing == []
    assert len(readme.splitlines()) <= 150


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", DISABLE_MKDOCS_2_WARNING="true")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


def test_the_cli_reference_has_every_command_and_option(site):
    import typer

    from b12kg.cli import app

    page = _text(site / "reference" / "cli" / "index.html")
    command = typer.main.get_command(app)
    for name, sub in command.commands.items():
        assert f"b12kg {name} [OPTIONS]" in page, name
        for param in sub.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in page, f"{name} {opt}"


def test_the_query_reference_has_every_query(site):
    page = _text(site / "reference" / "queries" / "index.html")
    for path in sorted((REPO / "queries").rglob("*.r[qu]")):
        assert f"{path.parent.name}/{path.stem}" in page, path


def test_the_schema_and_fhir_references_are_generated(site):
    schema = json.loads((REPO / "schema" / "recommendation.schema.json").read_text(encoding="utf-8"))
    page = _text(site / "reference" / "schema" / "index.html")
    for name, definition in schema["$defs"].items():
        if definition.get("properties"):
            assert name in page
    fhir = _text(site / "reference" / "fhir-output" / "index.html")
    for kind in ("GuidanceResponse", "RequestGroup", "MedicationRequest", "ServiceRequest", "DetectedIssue", "Provenance"):
        assert f"| {kind} |" in fhir or f" {kind} " in fhir, kind


def test_the_ontology_pages_and_diagram_are_in_the_site(site):
    folder = site / "reference" / "ontology"
    assert {"ontology.html", "individuals.html", "decision.svg", "decision.dot"} <= {p.name for p in folder.iterdir()}
    assert "decision.svg" in (folder / "index.html").read_text(encoding="utf-8")
