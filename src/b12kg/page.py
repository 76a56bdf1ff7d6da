"""``recommend --format html``: one self-contained page per evaluation, for clinicians.

The decision and the selected regimen come first, with the assumptions and the data to record beside
them; then a timeline (matplotlib, inline SVG, nothing fetched at view time): the patient's B12
results in pmol/L against the ontology's B12 thresholds as bands, each B12 dose as a marker, the
next-dose window and the recheck window as hatched spans; homocysteine against its target when
measured; then the statements with the article's reference numbers, provenance in ``<details>``.

Everything shown comes from the report (:func:`b12kg.report.patient_report`) and the report queries
(``report/results``, ``report/doses``); no guideline number or text is written here. Meaning never
rests on colour alone: each band and span is labelled and hatched, markers differ in shape.
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import Any

import pyoxigraph as ox

from b12kg.derive import Evaluation
from b12kg.report import next_due_text, reports

__all__ = ["render_html", "timeline_svg"]

B12_ANALYTE = "serum-b12"
HCY_ANALYTE = "homocysteine"
_HATCHES = ("", "..", "//", "xx")


def _day(text: str) -> date:
    return date.fromisoformat(text[:10])


def _timeline_data(evaluation: Evaluation, patient: str) -> dict[str, Any]:
    ws = evaluation.workspace
    subject = {"patient": ox.NamedNode(patient)}
    results: dict[str, list[tuple[date, float]]] = {}
    for row in ws.select("report/results", subject):
        if "canonical" not in row:
            continue
        analyte = row["analyte"].value.rsplit("#", 1)[-1]
        results.setdefault(analyte, []).append((_day(row["date"].value), float(row["canonical"].value)))
    doses = [(_day(r["day"].value), r["productLabel"].value, r["routeLabel"].value)
             for r in ws.select("report/doses", {**subject, "asOf": evaluation.as_of})]
    return {"results": {k: sorted(v) for k, v in results.items()}, "doses": doses}


def timeline_svg(report: dict[str, Any], data: dict[str, Any]) -> tuple[str, str]:
    """The timeline as inline SVG, and its text alternative."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, readable by screen readers
    b12 = data["results"].get(B12_ANALYTE, [])
    hcy = data["results"].get(HCY_ANALYTE, [])
    thresholds = report["assessment"]["thresholds"]
    b12_cuts = sorted((t for t in thresholds if t["analyte"] == B12_ANALYTE), key=lambda t: t["value"])
    hcy_target = next((t for t in thresholds if t["analyte"] == HCY_ANALYTE), None)
    windows = []
    for rec in report["recommendations"] if report["in_scope"] else []:
        due = rec.get("next_due") if rec["status"] == "selected" else None
        if due:
            windows.append(("next dose", _day(due["earliest"]), _day(due["latest"]), "//"))
        if rec.get("window"):
            windows.append(("follow-up", _day(rec["window"]["start"]), _day(rec["window"]["end"]), "\\\\"))
    as_of = _day(report["as_of"])
    days = [d for d, _ in b12 + hcy] + [d for d, _, _ in data["doses"]] + [as_of]
    days += [d for _, start, end, _ in windows for d in (start, end)]
    start, end = min(days) - timedelta(days=20), max(days) + timedelta(days=20)

    rows = 2 if hcy else 1
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3.6 * rows), sharex=True, squeeze=False)
    ax = axes[0][0]
    top = max([v for _, v in b12] + [t["value"] for t in b12_cuts] + [1]) * 1.25
    bounds = [0.0] + [float(t["value"]) for t in b12_cuts] + [top]
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        ax.axhspan(lo, hi, facecolor=("#fde2e2", "#fdf0d5", "#fff9d6", "#e6f4ea")[min(i, 3)], alpha=0.6,
                   hatch=_HATCHES[min(i, 3)], edgecolor="#bbbbbb", linewidth=0, zorder=0)
    for t in b12_cuts:
        ax.axhline(t["value"], color="#555555", linestyle="--", linewidth=0.8)
        ax.text(start + timedelta(days=2), t["value"], f" {t['value']:g} {t['unit']}: {t['label']}", va="bottom",
                fontsize=7.5)
    for label, w_start, w_end, hatch in windows:
        ax.axvspan(w_start, w_end, facecolor="none", hatch=hatch, edgecolor="#1f4e79", linewidth=0.8, zorder=1)
        ax.text(w_start, top * 0.97, f" {label}\n {w_start.isoformat()} to {w_end.isoformat()}", va="top", fontsize=7.5)
    if b12:
        points = ax.plot([d for d, _ in b12], [v for _, v in b12], "o-", color="#1f1f7a", markersize=7, zorder=3,
                         label="serum B12 (pmol/L)")[0]
        points.set_gid("b12-points")
        for d, v in b12:
            ax.annotate(f"{v:.0f}", (d, v), textcoords="offset points", xytext=(6, 6), fontsize=8)
    for d, product, route in data["doses"]:
        ax.axvline(d, color="#7a1f1f", linewidth=0.8, zorder=2)
    if data["doses"]:
        marks = ax.plot([d for d, _, _ in data["doses"]], [top * 0.05] * len(data["doses"]), "v", color="#7a1f1f",
                        markersize=9, zorder=3, label="B12 dose")[0]
        marks.set_gid("dose-markers")
    ax.axvline(as_of, color="black", linewidth=1.2, linestyle=":")
    ax.text(as_of, top * 0.05, " as of", fontsize=7.5)
    ax.set_ylim(0, top)
    ax.set_xlim(start, end)
    ax.set_ylabel("serum B12 (pmol/L)")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    if hcy:
        h = axes[1][0]
        if hcy_target:
            h.axhline(hcy_target["value"], color="#555555", linestyle="--", linewidth=0.8)
            h.text(start + timedelta(days=2), hcy_target["value"], f" {hcy_target['value']:g} {hcy_target['unit']}: "
                   f"{hcy_target['label']}", va="bottom", fontsize=7.5)
        line = h.plot([d for d, _ in hcy], [v for _, v in hcy], "s-", color="#1f5f1f", markersize=6,
                      label="homocysteine (umol/L)")[0]
        line.set_gid("homocysteine-points")
        h.set_ylim(0, max([v for _, v in hcy] + [hcy_target["value"] if hcy_target else 0]) * 1.4)
        h.set_ylabel("homocysteine (umol/L)")
        h.legend(loc="upper left", fontsize=8)
    axes[-1][0].xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # inline: no XML declaration or DOCTYPE
    shown_b12 = ", ".join(f"{v:.0f} on {d.isoformat()}" for d, v in b12)
    shown_cuts = ", ".join(f"{t['value']:g} {t['unit']}" for t in b12_cuts)
    shown_hcy = ", ".join(f"{v:g} on {d.isoformat()}" for d, v in hcy)
    shown_windows = "".join(f"; {label} window {s.isoformat()} to {e.isoformat()}" for label, s, e, _ in windows)
    alt = (f"Timeline of serum B12: {len(b12)} result(s) in pmol/L" + (f" ({shown_b12})" if b12 else "")
           + f", against the thresholds {shown_cuts}; {len(data['doses'])} B12 dose(s){shown_windows}"
           + (f"; homocysteine {shown_hcy}" if hcy else "") + ".")
    return svg, alt


def render_html(evaluation: Evaluation) -> str:
    """The page for every patient of the evaluation."""
    from importlib.resources import files

    from jinja2 import Environment, select_autoescape
    from markupsafe import Markup

    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string((files("b12kg") / "templates" / "patient.html").read_text(encoding="utf-8"))
    patients = []
    for report in reports(evaluation):
        svg, alt = timeline_svg(report, _timeline_data(evaluation, report["patient"]))
        selected = [r for r in report["recommendations"] if r["status"] == "selected"]
        patients.append({"report": report, "svg": Markup(svg), "alt": alt, "selected": selected,
                         "next_due": [next_due_text(r["next_due"]) for r in selected if r.get("next_due")]})
    return template.render(patients=patients)
