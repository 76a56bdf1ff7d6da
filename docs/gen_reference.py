"""Generate the reference pages of the documentation site (run by mkdocs-gen-files during
``mkdocs build``): the command line (from the typer app), the query library (from the ``#+`` headers
of ``queries/``), the JSON output schema, the FHIR output (from the seed case's Bundle), and the
ontology pages with the decision diagram (``b12kg docs``). Nothing here is written by hand, so the
reference cannot drift from the code and the knowledge base."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import mkdocs_gen_files

from b12kg.check import query_header
from b12kg.kb import KnowledgeBase
from b12kg.ontodocs import build

ROOT = Path(__file__).resolve().parents[1]
kb = KnowledgeBase(ROOT)

# ------------------------------------------------------------------ command line
with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write("# Command line\n\nGenerated from the `b12kg` command itself (`b12kg COMMAND --help` says the same).\n\n")
    page.write("::: mkdocs-click\n    :module: b12kg.cli_reference\n    :command: command\n    :prog_name: b12kg\n"
               "    :depth: 1\n    :list_subcommands: true\n")

# ------------------------------------------------------------------ query library
FOLDERS = {
    "research": "Research queries (`b12kg query NAME`, `GET /queries/NAME`)",
    "research/expand": "The expanded provenance (`recommend`, `b12kg export --expand-provenance`)",
    "normalise": "Pipeline: normalise", "derive": "Pipeline: derive", "schedule": "Pipeline: schedule",
    "report": "Reports", "fhir": "FHIR output", "cohort": "Cohort store", "qc": "Quality checks (`b12kg check`)",
    "check": "Checks and scenarios", "competency": "Competency questions", "validate": "Validation",
    "tables": "Tables", "docs": "Generated documentation",
}
with mkdocs_gen_files.open("reference/queries.md", "w") as page:
    page.write("# Query library\n\nEvery SPARQL query and update of `queries/`, from its `#+` header lines. "
               "User values reach a query only as bound RDF terms, never pasted into its text.\n\n")
    for folder, title in FOLDERS.items():
        files = sorted((kb.queries_dir / folder).glob("*.r[qu]"))
        if not files:
            continue
        page.write(f"## {title}\n\n| query | what it answers | parameters | output |\n|---|---|---|---|\n")
        for path in files:
            header = query_header(path.read_text(encoding="utf-8"))
            cells = [header.get(k, "").replace("|", "\\|").replace("\n", " ") for k in ("summary", "parameters", "output")]
            page.write(f"| `{folder}/{path.stem}` | {cells[0]} | {cells[1]} | {cells[2]} |\n")
        page.write("\n")
    missing = sorted({p.parent.relative_to(kb.queries_dir).as_posix() for p in kb.queries_dir.rglob("*.r[qu]")}
                     - set(FOLDERS))
    if missing:
        raise SystemExit(f"docs/gen_reference.py: query folders without a section: {', '.join(missing)}")

# ------------------------------------------------------------------ JSON schema
schema_path = kb.schema_dir / "recommendation.schema.json"
schema = json.loads(schema_path.read_text(encoding="utf-8"))
with mkdocs_gen_files.open("reference/schema.md", "w") as page:
    page.write(f"# JSON output schema\n\n`recommend --format json` gives one document (or a list) valid against "
               f"`schema/{schema_path.name}` ({schema.get('$schema', '')}):\n\n> {schema.get('description', '')}\n\n")
    definitions = schema.get("$defs", {})
    for name, definition in definitions.items():
        props = definition.get("properties", {})
        if not props:
            continue
        page.write(f"## `{name}`\n\n{definition.get('description', '')}\n\n| field | type | description |\n|---|---|---|\n")
        required = set(definition.get("required", []))
        for field, spec in props.items():
            kind = spec.get("type") or spec.get("$ref", "").rsplit("/", 1)[-1] or ("one of" if "oneOf" in spec else "")
            kind = " or ".join(kind) if isinstance(kind, list) else kind
            text = (spec.get("description", "") or "").replace("|", "\\|").replace("\n", " ")
            page.write(f"| `{field}`{' (required)' if field in required else ''} | {kind} | {text} |\n")
        page.write("\n")
    page.write("## The schema\n\n```json\n" + json.dumps(schema, indent=2, ensure_ascii=False) + "\n```\n")

# ------------------------------------------------------------------ FHIR output
seed = ROOT / "examples" / "patients" / "seed-case.ttl"
done = subprocess.run([sys.executable, "-m", "b12kg.cli", "recommend", str(seed), "--as-of", "2025-10-31",
                       "--format", "fhir"], capture_output=True, text=True, check=True)
bundle = json.loads(done.stdout)
bundles = bundle if isinstance(bundle, list) else [bundle]


def paths(value, prefix=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for item in value:
            yield from paths(item, prefix)
    else:
        yield prefix


elements: dict[str, set[str]] = {}
for b in bundles:
    for entry in b.get("entry", []):
        resource = entry["resource"]
        elements.setdefault(resource["resourceType"], set()).update(p for p in paths(resource) if p != "resourceType")
with mkdocs_gen_files.open("reference/fhir-output.md", "w") as page:
    page.write("# FHIR output profile\n\nThe FHIR R4 resources `recommend --format fhir` writes, and the elements "
               "each one fills, read from the seed case's Bundle (generated at build time; see [FHIR](../fhir.md) "
               "for what each means).\n\n| resource | elements filled |\n|---|---|\n")
    for kind, found in sorted(elements.items()):
        page.write(f"| {kind} | {', '.join(f'`{p}`' for p in sorted(found))} |\n")
    page.write("\n## The seed case's Bundle\n\n```json\n" + json.dumps(bundle, indent=2, ensure_ascii=False)[:60000]
               + "\n```\n")

# ------------------------------------------------------------------ ontology pages and decision diagram
with tempfile.TemporaryDirectory() as tmp:
    built = build(kb, Path(tmp))
    for path in built.files:
        with mkdocs_gen_files.open(f"reference/ontology/{path.name}", "wb") as out:
            out.write(path.read_bytes())
with mkdocs_gen_files.open("reference/ontology.md", "w") as page:
    page.write(f"# Ontology and decision diagram\n\nGenerated from the ontology by `b12kg docs` at build time: "
               f"{built.classes} classes, {built.individuals} named individuals.\n\n"
               "* [Classes and properties](ontology/ontology.html) (pyLODE)\n"
               "* [Named individuals](ontology/individuals.html): the guideline's statements, thresholds, regimens, "
               "contraindications, scope exclusions, rules and codes\n"
               "* [The decision diagram as Graphviz source](ontology/decision.dot)\n\n"
               "## The decision\n\nPatient states → scope exclusions (\"if\", dashed \"unless\"); states → the statements "
               "and actions they are the population of; statements → regimens → allowed products; states → "
               "contraindications → the products they forbid (bold).\n\n"
               "![The decision, generated from the ontology](ontology/decision.svg)\n")
