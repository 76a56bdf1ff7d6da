"""What an edit of the knowledge base changes: two knowledge bases compared on patients.

:func:`compare` evaluates every scenario of the enumeration (:mod:`b12kg.scenarios`; the bands are
split at the thresholds of *both* knowledge bases, and the levels of both are kept, so a value
between an old and a new threshold is a scenario of its own) and, optionally, every patient of a
cohort store, under the old and the new knowledge base, with the same pipeline ``recommend`` uses.
Each scenario or patient's decision is a set of items (scope, recommendations, regimens,
permitted products, contraindications, missing data, assumptions); the report lists the items
gained and lost.

Each change is attributed to its cause: the edit is cut into units (the triples of one subject of
the ontology or the shapes, a blank-node structure counted with the subject that owns it; one query
file), and each unit is applied alone to the old knowledge base and evaluated on the subjects that
changed. A change a unit reproduces alone is listed under that unit; a change no unit reproduces
alone is listed under "the units together".

:func:`resolve` reads a knowledge base from a folder or from a git revision of the working copy.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import rdflib
from rdflib.compare import to_canonical_graph

from b12kg import scenarios as sc
from b12kg.errors import B12kgError, KnowledgeBaseError
from b12kg.kb import KnowledgeBase

__all__ = ["Cause", "DiffError", "DiffReport", "Item", "compare", "kb_changes", "require_kb", "resolve"]

KB_FOLDERS = ("ontology", "shapes", "queries", "schema")
TOGETHER = "the units together"  #: the cause of changes no single unit reproduces
UNATTRIBUTED = "all units (too many to try one by one)"


class DiffError(B12kgError):
    """The comparison could not run (a revision or folder that is not a knowledge base)."""


# ------------------------------------------------------------------------------ the two knowledge bases
@contextmanager
def resolve(spec: str, *, repository: Path) -> Iterator[tuple[KnowledgeBase, str]]:
    """A knowledge base from ``spec``: a folder with ontology/, shapes/ and queries/, or a git
    revision of the repository that holds ``repository`` (its knowledge-base folders are extracted
    to a temporary folder, removed afterwards). Yields (knowledge base, label)."""
    folder = Path(spec)
    if folder.is_dir():
        require_kb(folder, spec)
        yield KnowledgeBase(folder), str(folder)
        return
    top = _git(repository, "rev-parse", "--show-toplevel")
    if top is None:
        raise DiffError(f"{spec!r} is neither a folder nor a git revision ({repository} is not in a git working copy)")
    top_path = Path(top.strip())
    commit = _git(top_path, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
    if commit is None:
        raise DiffError(f"{spec!r} is neither a folder nor a git revision of {top_path}")
    prefix = repository.resolve().relative_to(top_path.resolve())
    paths = [str(prefix / name) if str(prefix) != "." else name for name in KB_FOLDERS]
    listed = _git(top_path, "ls-tree", "--name-only", commit.strip(), "--", *paths) or ""
    present = [p for p in paths if p in listed.split()]
    archive = subprocess.run(["git", "-C", str(top_path), "archive", "--format=tar", commit.strip(), "--", *present],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise DiffError(f"git archive {spec}: {archive.stderr.decode(errors='replace').strip()}")
    with tempfile.TemporaryDirectory(prefix="b12kg-diff-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        root = Path(tmp) / prefix
        require_kb(root, f"revision {spec}")
        yield KnowledgeBase(root), f"{spec} ({commit.strip()[:12]})"


def _git(where: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    return done.stdout if done.returncode == 0 else None


def require_kb(root: Path, what: str) -> None:
    missing = [d for d in ("ontology", "shapes", "queries") if not (root / d).is_dir()]
    if missing:
        raise DiffError(f"{what}: not a knowledge base (no {', '.join(m + '/' for m in missing)})")


# ------------------------------------------------------------------------------ what the edit is
@dataclass
class Cause:
    """One unit of the edit: the triples of one subject (ontology or shapes), or one query file."""

    key: str  #: the subject IRI, a blank-node label, or the query file's path
    kind: str  #: "ontology", "shapes" or "query"
    removed: list[tuple[str, str]] = field(default_factory=list)  #: (file, triple in N-Triples)
    added: list[tuple[str, str]] = field(default_factory=list)
    location: str = ""  #: file:line in the new knowledge base (the old one when the subject is gone)

    def to_dict(self) -> dict:
        return {"key": self.key, "kind": self.kind, "location": self.location,
                "removed": [{"file": f, "triple": t} for f, t in self.removed],
                "added": [{"file": f, "triple": t} for f, t in self.added]}


def _graph_files(kb: KnowledgeBase) -> dict[str, Path]:
    files = {str(p.relative_to(kb.root)): p for p in kb.ontology_files.values()}
    files.update({str(p.relative_to(kb.root)): p for p in kb.shape_files()})
    return files


def _canonical(path: Path | None) -> rdflib.Graph:
    graph = rdflib.Graph()
    if path is not None:
        try:
            graph.parse(path, format="turtle")
        except Exception as exc:  # rdflib raises many kinds for bad Turtle
            raise KnowledgeBaseError(f"{path}: {exc}") from None
    return to_canonical_graph(graph)


def _owner(graph: rdflib.Graph, node: rdflib.term.Node) -> rdflib.term.Node:
    """The named subject a blank node hangs from (itself when nothing named points at it)."""
    seen = set()
    while isinstance(node, rdflib.BNode) and node not in seen:
        seen.add(node)
        parents = sorted(graph.subjects(None, node), key=lambda n: (isinstance(n, rdflib.BNode), str(n)))
        if not parents:
            break
        node = parents[0]
    return node


def kb_changes(old: KnowledgeBase, new: KnowledgeBase) -> list[Cause]:
    """The edit from ``old`` to ``new`` cut into units, in a stable order."""
    causes: dict[str, Cause] = {}
    old_files, new_files = _graph_files(old), _graph_files(new)
    for rel in sorted(set(old_files) | set(new_files)):
        before, after = _canonical(old_files.get(rel)), _canonical(new_files.get(rel))
        kind = "shapes" if rel.startswith("shapes/") else "ontology"
        for graph, other, target in ((before, after, "removed"), (after, before, "added")):
            for triple in sorted(set(graph) - set(other)):
                owner = _owner(graph, triple[0])
                key = str(owner) if isinstance(owner, rdflib.URIRef) else f"_:{owner}"
                cause = causes.setdefault(key, Cause(key=key, kind=kind))
                getattr(cause, target).append((rel, " ".join(t.n3() for t in triple) + " ."))
    for rel in sorted({_rel(p, old.queries_dir) for p in old.queries_dir.rglob("*.r[qu]")} |
                      {_rel(p, new.queries_dir) for p in new.queries_dir.rglob("*.r[qu]")}):
        a, b = old.queries_dir / rel, new.queries_dir / rel
        text_a = a.read_text(encoding="utf-8") if a.is_file() else None
        text_b = b.read_text(encoding="utf-8") if b.is_file() else None
        if text_a != text_b:
            key = f"queries/{rel}"
            causes[key] = Cause(key=key, kind="query",
                                removed=[(key, "the old file")] if text_a is not None else [],
                                added=[(key, "the new file")] if text_b is not None else [])
    out = sorted(causes.values(), key=lambda c: (c.kind != "ontology", c.kind, c.key))
    locate_new, locate_old = _locator(new), _locator(old)
    for cause in out:
        if cause.kind == "query":
            cause.location = cause.key
        else:
            cause.location = locate_new(cause.key) or locate_old(cause.key) or (cause.added or cause.removed)[0][0]
    return out


def _rel(path: Path, base: Path) -> str:
    return str(path.relative_to(base))


def _locator(kb: KnowledgeBase):
    from b12kg.check import Context

    ctx = Context(kb, as_of=date.today(), strength=None, scenarios_out=None)

    def locate(iri: str) -> str | None:
        file, line = ctx.locate(iri)
        return f"{file}:{line}" if file and line else None

    return locate


def _apply(old: KnowledgeBase, new: KnowledgeBase, cause: Cause, folder: Path) -> KnowledgeBase:
    """The old knowledge base with one unit of the edit applied, written to ``folder``."""
    for name in KB_FOLDERS:
        if (old.root / name).is_dir():
            shutil.copytree(old.root / name, folder / name)
    if cause.kind == "query":
        target = folder / cause.key
        source = new.root / cause.key
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        elif target.is_file():
            target.unlink()
        return KnowledgeBase(folder)
    files = {f for f, _ in cause.removed + cause.added}
    for rel in files:
        path = folder / rel
        graph = _canonical(path if path.is_file() else None)
        lines = {" ".join(t.n3() for t in triple) + " ." for triple in graph}
        lines -= {t for f, t in cause.removed if f == rel}
        lines |= {t for f, t in cause.added if f == rel}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    return KnowledgeBase(folder)


# ------------------------------------------------------------------------------ what a decision is
Item = tuple[str, ...]  #: (kind, entity[, detail]) — one thing a decision says


def items(decision: sc.Decision) -> set[Item]:
    """What a decision says, as comparable items."""
    out: set[Item] = set()
    out.add(("scope", "in scope") if decision.in_scope else ("scope", "out of scope"))
    out |= {("not covered", e) for e in decision.not_covered}
    out |= {("recommendation", s, status) for s, status in decision.recommended.items()}
    out |= {("regimen", r, "selected") for r in decision.selected}
    out |= {("regimen", r, "alternative") for r in decision.alternatives}
    out |= {("permitted product", p, r) for r, products in decision.products.items() for p in products}
    out |= {("contraindication", p, c) for p, cs in decision.contraindicated.items() for c in cs}
    out |= {("possible contraindication", p, c) for p, cs in decision.possibly_contraindicated.items() for c in cs}
    out |= {("missing data", m) for m in decision.missing}
    out |= {("assumption", a) for a in decision.assumed}
    return out


# ------------------------------------------------------------------------------ the comparison
@dataclass
class Subject:
    """A scenario of the enumeration or a patient of a store."""

    id: str
    kind: str  #: "scenario" or "patient"
    values: dict[str, str]


@dataclass
class Effect:
    """One item gained or lost, and the subjects it happens to."""

    sign: str  #: "+" gained, "-" lost
    item: Item
    subjects: list[str] = field(default_factory=list)


@dataclass
class DiffReport:
    old: str
    new: str
    as_of: date
    causes: list[Cause]
    subjects: dict[str, Subject]
    evaluated: dict[str, int]  #: kind -> how many subjects were evaluated
    changed: set[str]  #: subject ids whose decision changed
    effects: dict[str, list[Effect]]  #: cause key (or TOGETHER / UNATTRIBUTED) -> effects
    names: dict[str, str] = field(default_factory=dict)  #: IRI -> label for display

    @property
    def has_changes(self) -> bool:
        return bool(self.changed)


def _reader() -> str:
    """The query that reads decisions: the running project's own, for both knowledge bases alike."""
    return KnowledgeBase().query("check/scenario-decisions")


def _scenario_space(old: KnowledgeBase, new: KnowledgeBase, as_of: date) -> sc.ScenarioSpace:
    cuts: dict[str, set] = defaultdict(set)
    for kb in (old, new):
        for analyte, values in sc.cut_points(kb).items():
            cuts[analyte] |= values
    space_new = sc.ScenarioSpace.from_kb(new, as_of=as_of, cuts=cuts)
    space_old = sc.ScenarioSpace.from_kb(old, as_of=as_of, cuts=cuts)
    return space_new.union(space_old, "the old knowledge base")


def _store_decisions(store, kb: KnowledgeBase, as_of: date, reader: str,
                     only: Iterable[str] | None = None) -> dict[str, sc.Decision]:
    """Each patient of the store, evaluated with the pipeline ``derive`` runs, under ``kb``."""
    import pyoxigraph as ox

    from b12kg import cohort
    from b12kg.engine import Workspace

    if only is None:
        patients = cohort.store_patients(store, kb)
    else:
        patients = [ox.NamedNode(p) for p in only]
    out: dict[str, sc.Decision] = {}
    size = cohort.DEFAULT_BATCH
    for i in range(0, len(patients), size):
        part = patients[i : i + size]
        batch = cohort._Batch(root=str(kb.root), as_of=as_of, reasoner="rules", shacl=True,
                              label=f"store batch {i + 1}", patients=[p.value for p in part],
                              data=cohort._batch_data(store, kb, part))
        evaluated = cohort._evaluate(batch)
        ws = Workspace(kb)
        ws.load_nt("derived", evaluated.derived)
        by_iri = {p.value: sc.Decision(scenario=sc.Scenario(id=p.value, levels=())) for p in part}
        for decision in sc.decisions_from_rows(ws.select_text(reader), by_iri):
            out[decision.scenario.id] = decision
    return out


def compare(old: KnowledgeBase, new: KnowledgeBase, *, as_of: date, old_label: str = "old", new_label: str = "new",
            strength: int | None = None, scenarios: bool = True, store=None, workers: int = 1,
            max_causes: int = 30, progress=None) -> DiffReport:
    """Evaluate the scenarios (and the store's patients) under both knowledge bases; attribute each
    change to the unit of the edit that causes it. ``strength``: a covering set of scenarios (every
    combination of that many dimensions) instead of the full cross product."""
    say = progress or (lambda message: None)
    reader = _reader()
    causes = kb_changes(old, new)
    subjects: dict[str, Subject] = {}
    before: dict[str, set[Item]] = {}
    after: dict[str, set[Item]] = {}
    evaluated: dict[str, int] = {}
    chosen: list[sc.Scenario] = []
    if scenarios:
        space = _scenario_space(old, new, as_of)
        chosen = list(space.scenarios()) if strength is None else sc.covering(space, strength)
        say(f"{len(chosen)} scenarios under the old knowledge base")
        for d in sc.evaluate(old, chosen, as_of=as_of, batch_size=300, workers=workers, reader=reader):
            before[d.scenario.id] = items(d)
            subjects[d.scenario.id] = Subject(d.scenario.id, "scenario", d.scenario.values())
        say(f"{len(chosen)} scenarios under the new knowledge base")
        for d in sc.evaluate(new, chosen, as_of=as_of, batch_size=300, workers=workers, reader=reader):
            after[d.scenario.id] = items(d)
        evaluated["scenario"] = len(chosen)
    if store is not None:
        say("the store's patients under the old knowledge base")
        old_store = _store_decisions(store, old, as_of, reader)
        say("the store's patients under the new knowledge base")
        new_store = _store_decisions(store, new, as_of, reader)
        for pid in sorted(set(old_store) | set(new_store)):
            subjects[pid] = Subject(pid, "patient", {})
            before[pid] = items(old_store[pid]) if pid in old_store else set()
            after[pid] = items(new_store[pid]) if pid in new_store else set()
        evaluated["patient"] = len(set(old_store) | set(new_store))
    changed = {sid for sid in subjects if before[sid] != after[sid]}
    deltas = {sid: {("+", i) for i in after[sid] - before[sid]} | {("-", i) for i in before[sid] - after[sid]}
              for sid in changed}
    effects: dict[str, dict[tuple, Effect]] = defaultdict(dict)

    def record(cause_key: str, sid: str, sign: str, item: Item) -> None:
        effect = effects[cause_key].setdefault((sign, item), Effect(sign, item))
        effect.subjects.append(sid)

    if changed and len(causes) == 1:
        for sid in sorted(changed):
            for sign, item in sorted(deltas[sid]):
                record(causes[0].key, sid, sign, item)
    elif changed and len(causes) > max_causes:
        for sid in sorted(changed):
            for sign, item in sorted(deltas[sid]):
                record(UNATTRIBUTED, sid, sign, item)
    elif changed:
        explained: dict[str, set] = defaultdict(set)
        by_id = {s.id: s for s in chosen}
        for number, cause in enumerate(causes, start=1):
            say(f"unit {number}/{len(causes)} alone: {cause.key}")
            with tempfile.TemporaryDirectory(prefix="b12kg-diff-unit-") as tmp:
                patched = _apply(old, new, cause, Path(tmp))
                alone: dict[str, set[Item]] = {}
                picked = [by_id[sid] for sid in sorted(changed) if sid in by_id]
                if picked:
                    for d in sc.evaluate(patched, picked, as_of=as_of, batch_size=300, workers=workers, reader=reader):
                        alone[d.scenario.id] = items(d)
                patients = [sid for sid in sorted(changed) if subjects[sid].kind == "patient"]
                if patients:
                    for pid, d in _store_decisions(store, patched, as_of, reader, only=patients).items():
                        alone[pid] = items(d)
            for sid, got in alone.items():
                for sign, item in sorted(deltas[sid]):
                    reproduced = (item in got) if sign == "+" else (item not in got)
                    if reproduced:
                        record(cause.key, sid, sign, item)
                        explained[sid].add((sign, item))
        for sid in sorted(changed):
            for sign, item in sorted(deltas[sid] - explained[sid]):
                record(TOGETHER, sid, sign, item)
    names = _names(old) | _names(new)
    return DiffReport(old=old_label, new=new_label, as_of=as_of, causes=causes, subjects=subjects,
                      evaluated=evaluated, changed=changed,
                      effects={k: sorted(v.values(), key=lambda e: (e.item, e.sign)) for k, v in effects.items()},
                      names=names)


def _names(kb: KnowledgeBase) -> dict[str, str]:
    """IRI -> rdfs:label of the ontology's entities (for display)."""
    import pyoxigraph as ox

    label = "http://www.w3.org/2000/01/rdf-schema#label"
    out = {}
    for quad in kb.ontology_quads(ox.DefaultGraph()):
        if quad.predicate.value == label and isinstance(quad.object, ox.Literal) and isinstance(quad.subject, ox.NamedNode):
            out.setdefault(quad.subject.value, quad.object.value)
    return out
