"""Generated documentation of the knowledge base: ontology pages and the decision diagram.

Both are made from the ontology by :func:`build` (``b12kg docs``), so they cannot drift from it:

* ``ontology.html``: a page for the imports closure by pyLODE (the OntPub profile: every class,
  property and named individual with its annotations, restrictions and links), self-contained;
* ``individuals.html``: every named individual (the guideline's statements, thresholds, regimens …)
  with its property values, which pyLODE's ontology profile leaves out;
* ``decision.dot`` / ``decision.svg``: the decision, from ``queries/docs/decision-diagram.rq``:
  patient states → scope exclusions, states → statements and actions, statements → regimens →
  products, states → contraindications → products. The DOT source is built with the ``graphviz``
  package and drawn by Graphviz's ``dot`` (Debian ``graphviz``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from b12kg.engine import Workspace
from b12kg.errors import B12kgError, ExitCode
from b12kg.kb import KnowledgeBase

__all__ = ["DocsError", "build", "decision_dot", "ontology_html"]

#: display of each kind of node: cluster title, shape, fill colour (the shape also tells the kind
#: apart, so the diagram does not rely on colour alone)
KINDS = {
    "state": ("Patient states (classes)", "ellipse", "#eef3fb"),
    "exclusion": ("Scope exclusions: not covered", "octagon", "#fbeeee"),
    "statement": ("Guideline statements", "box", "#f4f4f4"),
    "action": ("Derived actions", "note", "#f4f4f4"),
    "regimen": ("Regimens", "box3d", "#eefbef"),
    "contraindication": ("Contraindications", "doubleoctagon", "#fbeeee"),
    "product": ("Products", "component", "#fffbe6"),
}


class DocsError(B12kgError):
    """A tool the documentation needs is missing or failed."""

    exit_code = ExitCode.INPUT


@dataclass
class Built:
    files: list[Path]
    classes: int
    edges: int
    individuals: int = 0


def _local(iri: str) -> str:
    return iri.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def decision_dot(kb: KnowledgeBase) -> tuple[str, int]:
    """The decision diagram as DOT source, and its number of edges."""
    import logging

    logging.getLogger("graphviz").setLevel(logging.WARNING)  # its import logs a DEBUG line per function
    try:
        import graphviz
    except ImportError:
        raise DocsError("the graphviz package is not installed: pip install 'b12kg[docs]'") from None

    rows = Workspace(kb).select("docs/decision-diagram")
    dot = graphviz.Digraph("decision", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "newrank": "true",
                                                   "label": "b12kg: the decision, generated from the ontology",
                                                   "labelloc": "t"},
                           node_attr={"fontname": "Helvetica", "fontsize": "10", "style": "filled"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "8"})
    nodes: dict[str, dict[str, str]] = {}
    ids: dict[str, str] = {}  # IRI -> DOT node id (an IRI's ':' would read as a DOT port)
    for row in rows:
        for end in ("from", "to"):
            iri, kind = row[end].value, row[f"{end}Kind"].value
            label = row[f"{end}Label"].value if f"{end}Label" in row else _local(iri)
            nodes.setdefault(kind, {})[iri] = label
            ids.setdefault(iri, f"n{len(ids)}")
    for kind, (title, shape, fill) in KINDS.items():
        if kind not in nodes:
            continue
        with dot.subgraph(name=f"cluster_{kind}") as cluster:
            cluster.attr(label=title, style="rounded", color="#999999")
            for iri, label in sorted(nodes[kind].items()):
                cluster.node(ids[iri], label=f"{label}\n({_local(iri)})", shape=shape, fillcolor=fill, tooltip=iri, URL=iri)
    for row in rows:
        style = {"unless": "dashed", "forbids": "bold"}.get(row["relation"].value, "solid")
        dot.edge(ids[row["from"].value], ids[row["to"].value], label=row["relation"].value, style=style)
    return dot.source, len(rows)


def ontology_html(kb: KnowledgeBase) -> tuple[str, int]:
    """The pyLODE page of the imports closure, and the number of classes it documents."""
    import logging

    import rdflib
    from rdflib.namespace import OWL, RDF

    root = logging.getLogger()
    quiet = logging.NullHandler()  # pyLODE configures the root logger at DEBUG on import unless it has a handler
    saved = root.level
    root.addHandler(quiet)
    root.setLevel(logging.WARNING)
    try:
        from pylode import OntPub
    except ImportError:
        raise DocsError("pyLODE is not installed: pip install 'b12kg[docs]'") from None
    finally:
        root.removeHandler(quiet)

    graph = rdflib.Graph()
    for path in kb.ontology_files.values():
        graph.parse(path, format="turtle")
    classes = sum(1 for c in graph.subjects(RDF.type, OWL.Class) if isinstance(c, rdflib.URIRef))
    root.addHandler(quiet)
    try:
        return OntPub(ontology=graph).make_html(), classes
    finally:
        root.removeHandler(quiet)
        root.setLevel(saved)


def individuals_html(kb: KnowledgeBase) -> tuple[str, int]:
    """A page of every named individual with its property values (pyLODE's ontology profile
    documents classes and properties only), built with dominate (pyLODE's own HTML library)."""
    from dominate import document
    from dominate.tags import a, code, dd, div, dl, dt, h1, h2, li, meta, p, style, ul

    rows = Workspace(kb).select("docs/individuals")
    by_individual: dict[str, list[dict]] = {}
    labels: dict[str, str] = {}
    for row in rows:
        iri = row["individual"].value
        by_individual.setdefault(iri, []).append(row)
        if "label" in row:
            labels[iri] = row["label"].value
    page = document(title="b12kg: named individuals")
    with page.head:
        meta(charset="utf-8")
        style("body{font-family:sans-serif;max-width:70em;margin:auto;padding:1em}"
              "dt{font-weight:bold;margin-top:.4em}h2{border-top:1px solid #ccc;padding-top:.6em}"
              "code{font-size:.9em}")
    with page:
        h1("Named individuals")
        p("Every named individual of the ontology's imports closure (the guideline's statements, thresholds, "
          "regimens, contraindications, scope exclusions, rules, codes), generated by b12kg docs. "
          "Classes and properties: ", a("ontology.html", href="ontology.html"), ".")
        with ul():
            for iri in sorted(by_individual):
                li(a(labels.get(iri, _local(iri)), href=f"#{_local(iri)}"))
        for iri in sorted(by_individual):
            with div(id=_local(iri)):
                h2(labels.get(iri, _local(iri)))
                p(code(iri))
                with dl():
                    for row in by_individual[iri]:
                        prop = row["property"].value
                        dt(row["propertyLabel"].value if "propertyLabel" in row else _local(prop), title=prop)
                        value = row["value"]
                        shown = row["valueLabel"].value if "valueLabel" in row else value.value
                        if value.value in by_individual:
                            dd(a(shown, href=f"#{_local(value.value)}"))
                        else:
                            dd(shown, title=value.value if shown != value.value else "")
    return page.render(), len(by_individual)


def build(kb: KnowledgeBase, out: Path, *, svg: bool = True) -> Built:
    """Write ``ontology.html``, ``individuals.html``, ``decision.dot`` and (with Graphviz's ``dot``)
    ``decision.svg`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    html, classes = ontology_html(kb)
    people, individuals = individuals_html(kb)
    source, edges = decision_dot(kb)
    pages, dot_file, svg_file = out / "ontology.html", out / "decision.dot", out / "decision.svg"
    pages.write_text(html, encoding="utf-8")
    (out / "individuals.html").write_text(people, encoding="utf-8")
    dot_file.write_text(source, encoding="utf-8")
    files = [pages, out / "individuals.html", dot_file]
    if svg:
        dot = shutil.which("dot")
        if dot is None:
            raise DocsError("Graphviz's dot is not installed (apt-get install graphviz); decision.dot was written")
        done = subprocess.run([dot, "-Tsvg", "-o", str(svg_file), str(dot_file)],
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise DocsError(f"dot failed on {dot_file}: {done.stderr.strip()}")
        files.append(svg_file)
    return Built(files=files, classes=classes, edges=edges, individuals=individuals)
