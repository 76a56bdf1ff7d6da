"""The ``b12kg diff`` command: what an edit of the knowledge base changes, rendered as text, JSON or CSV.

Exit codes (as diff(1)): 0 no decision changes, 1 some decision changes, 2 the comparison could not
run (a revision or folder that is not a knowledge base, a bad option), 5 a knowledge base is broken.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from b12kg.check import compact
from b12kg.diff import TOGETHER, UNATTRIBUTED, DiffReport, Effect, Item
from b12kg.scenarios import common_values

__all__ = ["diff_command", "render_csv", "render_json", "render_text", "summary_lines"]

COULD_NOT_RUN = 2
_KIND_WORDS = {
    "scope": "scope",
    "not covered": "not-covered reason",
    "recommendation": "recommendation",
    "regimen": "regimen",
    "permitted product": "permitted product",
    "contraindication": "contraindication",
    "possible contraindication": "possible contraindication",
    "missing data": "missing-data item",
    "assumption": "assumption",
}


def describe_item(item: Item, names: dict[str, str]) -> str:
    """``recommendation gl:stmt-form-1 "Form 1: …" (selected)``: an item for people."""
    kind, entity, *detail = item
    label = names.get(entity)
    text = f"{_KIND_WORDS.get(kind, kind)} {compact(entity)}" + (f" \"{label}\"" if label else "")
    if detail:
        extra = detail[0]
        word = {"permitted product": "for", "contraindication": "by", "possible contraindication": "by"}.get(kind)
        text += f" ({word} {compact(extra)})" if word else f" ({compact(extra).split(':')[-1]})"
    return text


def _common(report: DiffReport, ids: list[str]) -> str:
    return common_values([report.subjects[i].values for i in ids if report.subjects[i].values])


def _example(report: DiffReport, sid: str) -> str:
    subject = report.subjects[sid]
    if not subject.values:
        return f"{subject.kind} {sid}"
    return f"{sid} ({', '.join(f'{k}={v}' for k, v in subject.values.items())})"


def _effect_line(report: DiffReport, effect: Effect) -> str:
    verb = "gain" if effect.sign == "+" else "lose"
    kinds = sorted({report.subjects[s].kind for s in effect.subjects})
    counts = " and ".join(f"{sum(report.subjects[s].kind == k for s in effect.subjects)} {k}(s)" for k in kinds)
    if len(effect.subjects) == 1:
        verb += "s"
        where = f"in {_example(report, effect.subjects[0])}"
    else:
        common = _common(report, effect.subjects)
        where = (f"all with {common}; " if common else "") + f"e.g. {effect.subjects[0]}"
    return f"{effect.sign} {counts} {verb} {describe_item(effect.item, report.names)}; {where}"


_PREFIXES = (("b12", "https://w3id.org/b12kg/ontology#"), ("gl", "https://w3id.org/b12kg/guideline#"),
             ("rdf", "http://www.w3.org/1999/02/22-rdf-syntax-ns#"), ("rdfs", "http://www.w3.org/2000/01/rdf-schema#"),
             ("owl", "http://www.w3.org/2002/07/owl#"), ("xsd", "http://www.w3.org/2001/XMLSchema#"),
             ("sh", "http://www.w3.org/ns/shacl#"), ("skos", "http://www.w3.org/2004/02/skos/core#"),
             ("dcterms", "http://purl.org/dc/terms/"), ("prov", "http://www.w3.org/ns/prov#"))


def compact_triple(triple: str) -> str:
    """An N-Triples line with the project's prefixes (for people; the report keeps the full form)."""
    import re

    def short(match) -> str:
        iri = match.group(1)
        for prefix, ns in _PREFIXES:
            if iri.startswith(ns) and re.fullmatch(r"[A-Za-z_][\w.-]*", iri[len(ns):]):
                return f"{prefix}:{iri[len(ns):]}"
        return match.group(0)

    return re.sub(r"<([^<>\s]+)>", short, triple)


def summary_lines(report: DiffReport) -> list[tuple[str, str, list[str]]]:
    """(cause key, location, effect lines) per cause with effects, in report order."""
    out = []
    for cause in report.causes:
        effects = report.effects.get(cause.key, [])
        out.append((cause.key, cause.location, [_effect_line(report, e) for e in effects]))
    for key in (TOGETHER, UNATTRIBUTED):
        if key in report.effects:
            out.append((key, "", [_effect_line(report, e) for e in report.effects[key]]))
    return out


def render_text(report: DiffReport) -> str:
    lines = [f"b12kg diff {report.old} -> {report.new} (scenarios evaluated at {report.as_of.isoformat()})"]
    evaluated = ", ".join(f"{n} {kind}(s)" for kind, n in report.evaluated.items()) or "nothing"
    lines.append(f"evaluated {evaluated} under both; {len(report.changed)} change their decision")
    if not report.causes:
        lines.append("the two knowledge bases hold the same triples and queries")
    lines.append(f"the edit: {len(report.causes)} unit(s)")
    for cause in report.causes:
        effects = report.effects.get(cause.key, [])
        tail = "" if effects else "  (changes no decision alone)"
        lines.append(f"  {cause.location}  {compact(cause.key)}  -{len(cause.removed)} +{len(cause.added)}{tail}")
    for key, location, effect_lines in summary_lines(report):
        if not effect_lines:
            continue
        lines.append("")
        lines.append(f"{location}  {compact(key)}" if location else key)
        cause = next((c for c in report.causes if c.key == key), None)
        if cause is not None:
            for file, triple in cause.removed:
                lines.append(f"    - {compact_triple(triple)}" if cause.kind != "query" else f"    - {file} (old)")
            for file, triple in cause.added:
                lines.append(f"    + {compact_triple(triple)}" if cause.kind != "query" else f"    + {file} (new)")
        lines += [f"  {line}" for line in effect_lines]
    return "\n".join(lines) + "\n"


def _effects_json(report: DiffReport, effects: list[Effect]) -> list[dict]:
    out = []
    for e in effects:
        kind, entity, *detail = e.item
        out.append({"change": "gained" if e.sign == "+" else "lost", "kind": kind, "entity": entity,
                    "label": report.names.get(entity), "detail": detail[0] if detail else None,
                    "count": len(e.subjects), "subjects": e.subjects})
    return out


def render_json(report: DiffReport) -> str:
    causes = []
    for cause in report.causes:
        entry = cause.to_dict()
        entry["effects"] = _effects_json(report, report.effects.get(cause.key, []))
        causes.append(entry)
    doc = {
        "old": report.old, "new": report.new, "as_of": report.as_of.isoformat(),
        "evaluated": report.evaluated, "changed": len(report.changed),
        "causes": causes,
        "together": _effects_json(report, report.effects.get(TOGETHER, [])),
        "unattributed": _effects_json(report, report.effects.get(UNATTRIBUTED, [])),
        "subjects": {sid: {"kind": s.kind, **({"values": s.values} if s.values else {})}
                     for sid, s in sorted(report.subjects.items()) if sid in report.changed},
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


CSV_COLUMNS = ["cause", "cause_location", "subject_kind", "subject", "change", "item_kind", "item", "item_label",
               "detail", "subject_description"]


def render_csv(report: DiffReport) -> str:
    """One row per (cause, subject, item gained or lost): for a spreadsheet in clinical review."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    locations = {c.key: c.location for c in report.causes}
    for key, effects in report.effects.items():
        for e in effects:
            kind, entity, *detail = e.item
            for sid in e.subjects:
                subject = report.subjects[sid]
                writer.writerow([key, locations.get(key, ""), subject.kind, sid,
                                 "gained" if e.sign == "+" else "lost", kind, entity, report.names.get(entity, ""),
                                 detail[0] if detail else "",
                                 "; ".join(f"{k}={v}" for k, v in subject.values.items())])
    return buffer.getvalue()


def diff_command(
    old: Annotated[str, typer.Argument(help="The knowledge base before the edit: a git revision (HEAD, main, a commit) or a folder.")] = "HEAD",
    new: Annotated[Optional[Path], typer.Argument(
        help="The knowledge base after the edit: a folder (default: the working copy, or $B12KG_HOME).")] = None,
    output: Annotated[str, typer.Option("--format", "-f", help="text, json or csv.")] = "text",
    out_file: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report to this file (default: stdout).")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Evaluation date of the scenarios and patients, YYYY-MM-DD (default: today).")] = None,
    strength: Annotated[Optional[int], typer.Option(
        "--strength", min=1, help="Faster partial run: scenarios cover every combination of this many dimensions (default: all scenarios).")] = None,
    no_scenarios: Annotated[bool, typer.Option("--no-scenarios", help="Compare only the patients of --store.")] = False,
    store: Annotated[Optional[Path], typer.Option("--store", help="Also compare every patient of this embedded cohort store (read only).")] = None,
    max_units: Annotated[int, typer.Option(
        "--max-units", min=1, help="Attribute changes to single units of the edit when it has at most this many.")] = 30,
) -> None:
    """What an edit of the knowledge base changes for patients: every scenario (and every patient of a
    store) evaluated under OLD and NEW; the recommendations, contraindications, scope decisions and
    missing-data items gained or lost, grouped by the edited subject that causes them. Exit 0 no
    change, 1 changes, 2 could not run."""
    import os

    from b12kg.diff import compare, require_kb, resolve
    from b12kg.errors import B12kgError, KnowledgeBaseError
    from b12kg.kb import KnowledgeBase, default_root
    from b12kg.store_cli import parse_as_of

    def fail(message: str, code: int = COULD_NOT_RUN) -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code)

    if output not in ("text", "json", "csv"):
        fail(f"--format: {output!r} is not one of text, json, csv")
    if no_scenarios and store is None:
        fail("--no-scenarios needs --store: there would be nothing to compare")
    try:
        day = parse_as_of(as_of)
        new_root = new if new is not None else default_root()
        if not new_root.is_dir():
            fail(f"{new_root}: no such folder")
        require_kb(new_root, str(new_root))  # before extracting OLD: a bad NEW fails at once
        opened = None
        if store is not None:
            if not store.is_dir():
                fail(f"--store {store}: no such folder")
            from b12kg.store import open_store

            opened = open_store(store=str(store), read_only=True)
        interactive = sys.stderr.isatty()
        try:
            with resolve(old, repository=new_root) as (old_kb, old_label):
                report = compare(old_kb, KnowledgeBase(new_root), as_of=day, old_label=old_label,
                                 new_label=str(new_root), strength=strength, scenarios=not no_scenarios,
                                 store=opened, workers=os.cpu_count() or 1, max_causes=max_units,
                                 progress=(lambda m: typer.echo(f"diff: {m}", err=True)) if interactive else None)
        finally:
            if opened is not None:
                opened.close()
    except KnowledgeBaseError as exc:
        fail(exc.message, int(exc.exit_code))
    except B12kgError as exc:
        fail(exc.message)
    text = {"text": render_text, "json": render_json, "csv": render_csv}[output](report)
    if out_file is not None:
        try:
            out_file.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"{out_file}: {exc.strerror or exc}", 3)
        typer.echo(f"wrote {out_file}: {len(report.changed)} changed", err=True)
    else:
        typer.echo(text, nl=False)
    raise typer.Exit(1 if report.has_changes else 0)
