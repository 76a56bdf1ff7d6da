"""The ``b12kg check`` command: run :mod:`b12kg.check` and render its findings (text, JSON, JUnit).

Exit codes: 0 no finding at or above ``--fail-on``; 1 findings at or above it; 2 the check could not
run (folder missing or not a knowledge base, bad option, a tool such as Java missing).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from b12kg.check import STAGES, CheckReport, Severity, registry, run_checks
from b12kg.inputs import date_problem

__all__ = ["check_command", "render_json", "render_junit", "render_text"]

COULD_NOT_RUN = 2


class CheckFormat(str, Enum):
    text = "text"
    json = "json"
    junit = "junit"


def render_text(report: CheckReport, *, color: bool | None = None, verbose: bool = False) -> str:
    import io

    from rich.console import Console
    from rich.text import Text

    console = Console(record=True, file=io.StringIO(), force_terminal=bool(color), width=120)
    styles = {"ERROR": "bold red", "WARN": "yellow", "INFO": "cyan"}
    console.print(f"[bold]b12kg check[/bold] {report.root}")
    for stage in report.stages:
        found = [f for f in report.findings if f.stage == stage or (f.stage == "check" and stage in f.message)]
        took = report.timings.get(stage, 0.0)
        status = "[green]ok[/green]" if not found else f"{len(found)} finding(s)"
        extra = f", {report.scenario_count} scenarios" if stage == "logic" and report.scenario_count else ""
        console.print(f"\n[bold]{stage}[/bold] ({took:.1f} s{extra}): {status}")
        for severity in ("ERROR", "WARN", "INFO"):
            of_severity = [x for x in found if x.severity.value == severity]
            if severity == "INFO" and not verbose:  # the record, not the news: one line per check
                by_check: dict[str, list] = {}
                for f in of_severity:
                    by_check.setdefault(f.check_id, []).append(f)
                for check_id, items in by_check.items():
                    first = f"{items[0].location}: " if items[0].location else ""
                    more = f" (and {len(items) - 1} more; --verbose lists them)" if len(items) > 1 else ""
                    console.print(Text.assemble("  ", (f"{severity:5}", styles[severity]),
                                                f" {check_id}  {len(items)} × e.g. {first}{items[0].message}{more}"),
                                  highlight=False, soft_wrap=True)
                continue
            for f in of_severity:
                where = f"{f.location}: " if f.location else ""
                console.print(Text.assemble("  ", (f"{severity:5}", styles[severity]), f" {f.check_id}  {where}{f.message}"),
                              highlight=False, soft_wrap=True)
                if f.fix and severity != "INFO":
                    console.print(f"        fix: {f.fix}", style="dim", highlight=False, soft_wrap=True)
    counts = report.counts()
    console.print(f"\n{counts['ERROR']} error(s), {counts['WARN']} warning(s), {counts['INFO']} info "
                  f"in {sum(report.timings.values()):.1f} s", highlight=False)
    return console.export_text(styles=bool(color))


def render_json(report: CheckReport, fail_on: Severity) -> str:
    return json.dumps(
        {
            "root": str(report.root),
            "exit_code": report.exit_code(fail_on),
            "fail_on": fail_on.value,
            "counts": report.counts(),
            "stages": {s: {"seconds": round(report.timings.get(s, 0.0), 3)} for s in report.stages},
            "scenarios": report.scenario_count,
            "findings": [f.to_dict() for f in report.findings],
        },
        indent=2,
        ensure_ascii=False,
    )


def render_junit(report: CheckReport, fail_on: Severity) -> str:
    """One test suite per stage, one test case per check (every registered check of the stage, and
    every check id found); findings at or above ``fail_on`` are failures, the others system-out."""
    known = registry()
    suites = ET.Element("testsuites", name="b12kg check")
    for stage in report.stages:
        ids = sorted({k for k, v in known.items() if v.stage == stage} |
                     {f.check_id for f in report.findings if f.stage == stage})
        suite = ET.SubElement(suites, "testsuite", name=stage, time=f"{report.timings.get(stage, 0.0):.3f}")
        failures = 0
        for check_id in ids:
            case = ET.SubElement(suite, "testcase", classname=f"b12kg.check.{stage}", name=check_id)
            found = [f for f in report.findings if f.check_id == check_id]
            failing = [f for f in found if f.severity.rank >= fail_on.rank]
            if failing:
                failures += 1
                failure = ET.SubElement(case, "failure", type=failing[0].severity.value,
                                        message=f"{len(failing)} finding(s)")
                failure.text = "\n".join(f"{f.severity.value} {f.location}: {f.message}" for f in failing)
            others = [f for f in found if f not in failing]
            if others:
                out = ET.SubElement(case, "system-out")
                out.text = "\n".join(f"{f.severity.value} {f.location}: {f.message}" for f in others)
        suite.set("tests", str(len(ids)))
        suite.set("failures", str(failures))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def check_command(
    directory: Annotated[Optional[Path], typer.Argument(
        help="A working copy with ontology/, shapes/ and queries/ (default: the project's knowledge base).")] = None,
    output: Annotated[str, typer.Option("--format", "-f", help="text, json or junit.")] = "text",
    fail_on: Annotated[str, typer.Option("--fail-on", help="error or warn: the lowest severity that fails.")] = "error",
    scenarios_out: Annotated[Optional[Path], typer.Option(
        "--scenarios-out", help="Write every scenario (full cross product) with its decision to this CSV file.")] = None,
    stage: Annotated[Optional[list[str]], typer.Option(
        "--stage", help=f"Run only these stages (repeat): {', '.join(STAGES)} (impact needs --against).")] = None,
    all_scenarios: Annotated[bool, typer.Option(
        "--all-scenarios", help="Evaluate the full cross product of scenario dimensions (the default).")] = False,
    strength: Annotated[Optional[int], typer.Option(
        "--strength", min=1, help="Faster partial run: scenarios cover every combination of this many dimensions.")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Evaluation date of the scenarios, YYYY-MM-DD (default: today).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every INFO finding (default: one line per check).")] = False,
    against: Annotated[Optional[str], typer.Option(
        "--against", help="Also run the impact stage: what the edit since this git revision (or folder) changes "
                          "for patients, as b12kg diff, one WARN per change.")] = None,
) -> None:
    """Check the knowledge base: syntax, OWL 2 DL + HermiT, guideline shapes, QC queries, decision logic,
    competency questions. Exit 0 clean, 1 findings at or above --fail-on, 2 could not run."""
    from b12kg.errors import B12kgError

    def fail(message: str) -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(COULD_NOT_RUN)

    try:
        fmt = CheckFormat(output)
    except ValueError:
        fail(f"--format: {output!r} is not one of text, json, junit")
    try:
        threshold = Severity(fail_on.upper())
        if threshold is Severity.INFO:
            raise ValueError
    except ValueError:
        fail(f"--fail-on: {fail_on!r} is not one of error, warn")
    day = None
    if as_of:
        try:
            day = date.fromisoformat(as_of)
        except ValueError:
            fail(f"--as-of: {as_of!r} is not a date (use YYYY-MM-DD)")
        problem = date_problem(day)
        if problem:
            fail(f"--as-of {as_of}: {problem}")
    if directory is not None and not directory.is_dir():
        fail(f"{directory}: no such folder")
    try:
        report = run_checks(directory, stages=stage or None, as_of=day,
                            strength=None if (all_scenarios or scenarios_out or strength is None) else strength, scenarios_out=scenarios_out,
                            against=against)
    except ValueError as exc:
        fail(str(exc))
    except B12kgError as exc:
        fail(exc.message)
    if fmt is CheckFormat.json:
        typer.echo(render_json(report, threshold))
    elif fmt is CheckFormat.junit:
        typer.echo(render_junit(report, threshold), nl=False)
    else:
        typer.echo(render_text(report, color=sys.stdout.isatty(), verbose=verbose), nl=False)
    if scenarios_out is not None:
        typer.echo(f"wrote {report.scenario_count} scenarios to {scenarios_out}", err=True)
    raise typer.Exit(report.exit_code(threshold))
