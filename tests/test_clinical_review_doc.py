"""docs/clinical-review.md lists every encoding choice of the ontology, each with a fixture where it
applies and one where it does not, and every fixture it names exists."""

from __future__ import annotations

import re
import tomllib

import rdflib

from conftest import EXAMPLES, REPO

PAGE = REPO / "docs" / "clinical-review.md"
CASES = {c["name"] for c in tomllib.loads((REPO / "tests" / "clinical-cases.toml").read_text())["case"]}
B12 = rdflib.Namespace("https://w3id.org/b12kg/ontology#")


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def _encoding_choices(kb) -> set[str]:
    g = rdflib.Graph()
    for path in kb.ontology_files.values():
        g.parse(path)
    return {g.namespace_manager.normalizeUri(s) for s in g.subjects(B12.encodingNote, None)}


def test_every_encoding_choice_has_a_row(kb):
    rows = _rows()
    missing = _encoding_choices(kb) - set(rows)
    assert not missing, f"add a row to docs/clinical-review.md for {sorted(missing)}"
    stale = set(rows) - _encoding_choices(kb)
    assert not stale, f"docs/clinical-review.md lists choices the ontology no longer notes: {sorted(stale)}"


def test_every_row_names_existing_fixtures_each_way():
    for choice, cells in _rows().items():
        for column in (3, 4):
            named = [f.strip() for f in cells[column].split(";") if f.strip()]
            assert named, f"{choice}: no fixture in column {column + 1}"
            for fixture in named:
                if fixture.startswith("("):  # a pointer to another test or an explanation, in parentheses
                    continue
                assert fixture in CASES or (EXAMPLES / f"{fixture}.ttl").is_file(), \
                    f"{choice}: {fixture!r} is neither a case of tests/clinical-cases.toml nor an example patient"


def test_the_page_is_linked_from_the_readme():
    assert re.search(r"\(docs/clinical-review\.md\)", (REPO / "README.md").read_text(encoding="utf-8"))
