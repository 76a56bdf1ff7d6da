"""The recommend command: outputs, provenance, and one-line errors with documented exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import rdflib
from rdflib.namespace import PROV, RDF

from b12kg.errors import ExitCode
from conftest import EXAMPLES, REPO, cli

B12 = rdflib.Namespace("https://w3id.org/b12kg/ontology#")
SEED = str(EXAMPLES / "seed-case.ttl")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "b12kg.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_text_output_from_another_directory(tmp_path):
    result = run("recommend", SEED, "--as-of", "2025-10-31", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SELECTED REGIMEN" in result.stdout and result.stderr == ""


def test_json_output():
    result = run("recommend", SEED, "--as-of", "2025-10-31", "--format", "json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert doc["in_scope"] is True and doc["as_of"] == "2025-10-31"


@pytest.mark.parametrize("fmt, parser", [("turtle", "turtle"), ("jsonld", "json-ld")])
def test_derived_graph_carries_prov_o_provenance(fmt, parser):
    result = run("recommend", SEED, "--as-of", "2025-10-31", "--format", fmt)
    assert result.returncode == 0, result.stderr
    g = rdflib.Graph().parse(data=result.stdout, format=parser)
    recs = list(g.subjects(RDF.type, B12.Recommendation))
    assert len(recs) >= 15
    (run_node,) = g.subjects(RDF.type, B12.Derivation)
    assert str(g.value(run_node, B12.asOf)) == "2025-10-31"
    assert str(g.value(run_node, B12.ontologyVersion)) == "https://w3id.org/b12kg/ontology/0.1.0"
    assert g.value(run_node, B12.engineVersion) is not None
    assert (run_node, PROV.wasAssociatedWith, None) in g
    for rec in recs:
        assert (rec, PROV.wasGeneratedBy, run_node) in g
        assert g.value(rec, B12.hasEvidence) is not None, rec
        sources = {str(o) for o in g.objects(rec, PROV.wasDerivedFrom)}
        assert any(s.startswith("https://w3id.org/b12kg/guideline#stmt-") for s in sources), rec
        assert any(s.startswith("https://example.org/b12kg/seed-case#") for s in sources), rec


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def seed_with(old: str, new: str) -> str:
    text = (EXAMPLES / "seed-case.ttl").read_text()
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(
    "make, code, expected",
    [
        (lambda t: str(t / "nope.ttl"), ExitCode.INPUT, "nope.ttl: no such file"),
        (lambda t: write(t, "bad.ttl", seed_with("b12:value 292 ;", "b12:value 292 ;;;\n :x :y")),
         ExitCode.INPUT, "bad.ttl:"),
        (lambda t: write(t, "neg.ttl", seed_with("b12:value 292 ;", "b12:value -5 ;")),
         ExitCode.INVALID_DATA, "value must not be negative (got -5)"),
        (lambda t: write(t, "float.ttl", seed_with("b12:value 292 ;", "b12:value 2.92e2 ;")),
         ExitCode.INVALID_DATA, "field b12:value"),
        (lambda t: write(t, "unit.ttl", seed_with('b12:unit "pg/mL"', 'b12:unit "mg/dL"')),
         ExitCode.INVALID_DATA, "unknown unit 'mg/dL' for serum vitamin B12 value 292"),
        (lambda t: write(t, "future.ttl", seed_with('"2025-08-31"', '"2026-01-05"')),
         ExitCode.INVALID_DATA, "effectiveDate 2026-01-05 is after the evaluation date 2025-10-31"),
        (lambda t: write(t, "baddate.ttl", seed_with('"1948-03-12"^^xsd:date', '"1948-13-45"^^xsd:date')),
         ExitCode.INVALID_DATA, "patient <https://example.org/b12kg/seed-case#patient>"),
        (lambda t: write(t, "noroute.ttl", seed_with("b12:route b12:intramuscular ;", "")),
         ExitCode.INVALID_DATA, "field b12:route"),
        (lambda t: write(t, "notes.txt", "hello"), ExitCode.INPUT, "unknown file type '.txt'"),
    ],
    ids=["missing-file", "malformed-turtle", "negative-value", "float-value", "unknown-unit",
         "future-date", "impossible-date", "missing-route", "unknown-type"],
)
def test_bad_input_is_one_line_per_problem_with_exit_code(tmp_path, make, code, expected):
    path = make(tmp_path)
    result = run("recommend", path, "--as-of", "2025-10-31")
    assert result.returncode == int(code), result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert result.stdout == ""
    for line in result.stderr.strip().splitlines():
        assert line.startswith("error: ")


def test_malformed_turtle_names_line_and_column(tmp_path):
    path = write(tmp_path, "bad.ttl", "@prefix b12: <https://w3id.org/b12kg/ontology#> .\n<a> b12:x \"open .\n")
    result = run("recommend", path, "--as-of", "2025-10-31")
    assert result.returncode == ExitCode.INPUT
    assert f"{path}:2:" in result.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--as-of", "31/10/2025"], "--as-of: '31/10/2025' is not a date"),
        (["--format", "pdf"], "--format: 'pdf' is not one of"),
        (["--reasoner", "pellet"], "--reasoner: 'pellet' is not one of"),
    ],
)
def test_bad_options_are_usage_errors(args, expected):
    result = run("recommend", SEED, *args)
    assert result.returncode == ExitCode.USAGE
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_rdf_star_in_a_patient_file_is_a_clean_input_error(tmp_path):
    path = write(tmp_path, "star.ttl", "@prefix b12: <https://w3id.org/b12kg/ontology#> .\n"
                 "<< <a:s> <a:p> <a:o> >> <a:q> <a:r> .\n<a:p> a b12:Patient .\n")
    result = run("recommend", path, "--as-of", "2025-10-31")
    assert result.returncode == ExitCode.INPUT and "Traceback" not in result.stderr
    assert "RDF-star quoted triples are not part of the patient vocabulary" in result.stderr


def test_fhir_ids_that_are_not_iris_do_not_crash(tmp_path):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:5eed{0000", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"fullUrl": "urn:uuid:c0nd{1", "resource": {"resourceType": "Condition", "id": "c1",
         "subject": {"reference": "urn:uuid:5eed{0000"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "230690007"}]}}}]}
    path = write(tmp_path, "odd-ids.json", json.dumps(bundle))
    result = run("recommend", path, "--as-of", "2025-10-31", "--format", "json")
    assert "Traceback" not in result.stderr and result.returncode != ExitCode.INTERNAL, result.stderr


def test_version():
    from b12kg import __version__

    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"b12kg {__version__}"


def test_help_shows_option_types_as_users_expect():
    recommend = cli("recommend", "--help").stdout
    assert re.search(r"--as-of\s+DATE", recommend) and re.search(r"--kb\s+PATH", recommend)
    assert "<str>" not in recommend and "<path>" not in recommend.split("Options")[-1]
    assert re.search(r"--port\s+INTEGER", cli("serve", "--help").stdout)


def test_one_licence_per_kind_consistent_everywhere():
    import tomllib

    import rdflib

    assert "MIT License" in (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "CC BY 4.0" in (REPO / "ontology" / "LICENSE").read_text(encoding="utf-8")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == {"text": "MIT"}
    dcterms = rdflib.Namespace("http://purl.org/dc/terms/")
    for path in sorted((REPO / "ontology").glob("*.ttl")):
        g = rdflib.Graph().parse(path)
        (ontology,) = g.subjects(rdflib.RDF.type, rdflib.OWL.Ontology)
        assert g.value(ontology, dcterms.license) == rdflib.URIRef("https://creativecommons.org/licenses/by/4.0/"), path.name
        assert g.value(ontology, dcterms.creator) is not None, path.name
