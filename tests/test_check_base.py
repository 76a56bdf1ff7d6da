"""`b12kg check` on the unmodified knowledge base, its output formats, exit codes and bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from b12kg.check import DEFAULT_STAGES as STAGES, Severity, registry, run_checks
from b12kg.check_cli import render_json, render_junit, render_text

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base_report():
    return run_checks(REPO)


def test_clean_knowledge_base_has_no_error(base_report):
    errors = [f"{f.check_id} {f.location} {f.message}" for f in base_report.findings if f.severity is Severity.ERROR]
    assert errors == []
    assert base_report.exit_code(Severity.ERROR) == 0
    assert set(base_report.stages) == set(STAGES)
    assert base_report.scenario_count > 0


def test_every_unmutated_stage_ran(base_report):
    assert not base_report.could_not_run
    assert not [f for f in base_report.findings if f.check_id in ("check-stage-skipped", "check-stage-crashed")]


def test_unverified_codes_are_info_from_the_query_header(base_report):
    infos = [f for f in base_report.findings if f.check_id == "qc-unverified-code"]
    assert infos and all(f.severity is Severity.INFO for f in infos)


def test_fail_on_warn_fails_when_warnings_exist(base_report):
    has_warn = any(f.severity is Severity.WARN for f in base_report.findings)
    assert base_report.exit_code(Severity.WARN) == (1 if has_warn else 0)


def test_json_and_junit_render_the_same_findings(base_report):
    data = json.loads(render_json(base_report, Severity.ERROR))
    assert data["exit_code"] == 0 and len(data["findings"]) == len(base_report.findings)
    assert set(data["stages"]) == set(STAGES)
    root = ET.fromstring(render_junit(base_report, Severity.WARN))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == list(STAGES)
    failures = sum(int(s.get("failures")) for s in suites)
    warned = {f.check_id for f in base_report.findings if f.severity.rank >= Severity.WARN.rank}
    assert failures == len(warned)


def test_text_groups_by_stage(base_report):
    text = render_text(base_report, color=False)
    positions = [text.index(f"\n{stage} (") for stage in STAGES]
    assert positions == sorted(positions)
    assert "0 error(s)" in text


def test_info_is_one_line_per_check_unless_verbose(base_report):
    infos = [f for f in base_report.findings if f.severity is Severity.INFO]
    checks = {f.check_id for f in infos}
    assert len(infos) > len(checks)  # the knowledge base has several unverified codes
    short = render_text(base_report, color=False)
    assert sum(line.lstrip().startswith("INFO") for line in short.splitlines()) == len(checks)
    assert "--verbose lists them" in short
    full = render_text(base_report, color=False, verbose=True)
    assert sum(line.lstrip().startswith("INFO") for line in full.splitlines()) == len(infos)


def test_registry_severities_are_data():
    checks = registry()
    assert checks["logic-gap"].severity is Severity.ERROR
    assert checks["owl-dl-punning"].severity is Severity.WARN
    assert all(c.fix for c in checks.values())


def test_scenarios_csv_has_one_row_per_evaluated_scenario(tmp_path: Path):
    out = tmp_path / "scenarios.csv"
    report = run_checks(REPO, stages=["logic"], strength=2, scenarios_out=out)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == report.scenario_count > 0
    assert {"scenario", "b12", "stroke", "selected_regimens", "not_covered", "gap", "conflict"} <= set(rows[0])
    assert all(r["gap"] == "false" for r in rows)
    # every in-scope scenario has exactly one selected regimen
    assert all(len(r["selected_regimens"].split("; ")) == 1 for r in rows if r["in_scope"] == "true")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "b12kg.cli", "check", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_missing_folder_is_one_line_exit_2(tmp_path: Path):
    result = _cli(str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no such folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_not_a_knowledge_base_is_exit_2(tmp_path: Path):
    result = _cli(str(tmp_path))
    assert result.returncode == 2 and "not a knowledge-base folder" in result.stderr


def test_cli_bad_option_is_exit_2():
    result = _cli("--fail-on", "sometimes", "--stage", "syntax")
    assert result.returncode == 2 and "--fail-on" in result.stderr


def test_cli_findings_exit_1_in_junit(tmp_path: Path):
    import shutil

    for folder in ("ontology", "shapes", "queries"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    target = tmp_path / "ontology/guideline.ttl"
    target.write_text(target.read_text(encoding="utf-8").replace("b12:hasEvidence gl:ref-6 ; ", "", 1), encoding="utf-8")
    result = _cli(str(tmp_path), "--stage", "shacl", "-f", "junit")
    assert result.returncode == 1
    root = ET.fromstring(result.stdout)
    failed = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert failed == ["shacl-statement-evidence"]
