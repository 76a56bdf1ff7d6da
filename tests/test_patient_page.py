"""``recommend --format html``: the patient page, rendered in a real browser (Debian's Chromium,
headless, through Playwright). The page must be self-contained, carry the decision, and its plot must
hold the patient's own points in the right places. ``B12KG_SCREENSHOTS=DIR`` keeps the screenshots
(docs/img/patient-page.png is the seed case's)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import EXAMPLES, SEED_AS_OF, cli, require_binary

require_binary("chromium", "the patient page test needs Debian's chromium: apt-get install chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]

# the seed case with a history: three B12 results (pmol/L 130, 215, 300 after conversion from pg/mL:
# 176, 292, 407), two homocysteine results, and a second dose
HISTORY = (EXAMPLES / "seed-case.ttl").read_text(encoding="utf-8").replace(
    "    b12:hasLabResult :b12 ;",
    "    b12:hasLabResult :b12 , :b12-earlier , :b12-latest , :hcy-1 , :hcy-2 ;\n"
    "    b12:hasAdministration :injection-0 ;",
) + """
:b12-earlier a b12:LabResult ; b12:code loinc:2132-9 ; b12:value 176 ; b12:unit "pg/mL" ;
    b12:effectiveDate "2025-06-20"^^xsd:date .
:b12-latest a b12:LabResult ; b12:code loinc:2132-9 ; b12:value 407 ; b12:unit "pg/mL" ;
    b12:effectiveDate "2025-10-27"^^xsd:date .
:hcy-1 a b12:LabResult ; b12:code loinc:13965-9 ; b12:value 14.0 ; b12:unit "umol/L" ;
    b12:effectiveDate "2025-06-20"^^xsd:date .
:hcy-2 a b12:LabResult ; b12:code loinc:13965-9 ; b12:value 9.0 ; b12:unit "umol/L" ;
    b12:effectiveDate "2025-10-24"^^xsd:date .
:injection-0 a b12:MedicationAdministration ; b12:substance b12:cyanocobalamin ; b12:doseValue 1 ;
    b12:doseUnit "mg" ; b12:route b12:intramuscular ; b12:effectiveDate "2025-07-01"^^xsd:date .
"""


def page_of(path: Path, tmp_path: Path, *extra: str) -> Path:
    done = cli("recommend", str(path), "--as-of", SEED_AS_OF.isoformat(), "--format", "html", *extra)
    assert done.returncode == 0, done.stderr
    out = tmp_path / f"{path.stem}.html"
    out.write_text(done.stdout, encoding="utf-8")
    return out


def test_the_page_is_self_contained_and_says_the_decision(tmp_path):
    html = page_of(EXAMPLES / "seed-case.ttl", tmp_path).read_text(encoding="utf-8")
    assert "<script" not in html and not re.search(r"\s(src|href)=\"https?:", html)
    assert '<link rel="stylesheet"' not in html
    assert "Decision: covered by the guideline" in html
    assert "hydroxocobalamin 1 mg intramuscular, every 2–3 months, for life" in html
    assert "<svg" in html and 'role="img"' in html and "aria-label=\"Timeline of serum B12: 1 result(s)" in html


def test_a_patient_the_guideline_does_not_cover_says_so_first(tmp_path):
    html = page_of(EXAMPLES / "no-stroke.ttl", tmp_path).read_text(encoding="utf-8")
    assert "Decision: NOT covered by the guideline" in html
    assert "No stroke is on record" in html
    assert "next dose" not in html  # no regimen window for a patient the guideline does not cover


def test_the_thresholds_are_read_from_the_ontology(tmp_path, kb_copy):
    path = kb_copy.ontology_dir / "guideline.ttl"
    path.write_text(path.read_text(encoding="utf-8").replace("b12:thresholdValue 322.0", "b12:thresholdValue 330.0"),
                    encoding="utf-8")
    html = page_of(EXAMPLES / "seed-case.ttl", tmp_path, "--kb", str(kb_copy.root)).read_text(encoding="utf-8")
    plot = html.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert "330 pmol/L: B12 stroke-risk threshold" in plot and "322 pmol/L" not in plot


def test_the_plot_holds_the_patients_points_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    patient = tmp_path / "history.ttl"
    patient.write_text(HISTORY, encoding="utf-8")
    pages = {"history": page_of(patient, tmp_path), "seed": page_of(EXAMPLES / "seed-case.ttl", tmp_path)}
    shots = Path(os.environ.get("B12KG_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith("file://") else None)
        page.goto(pages["history"].as_uri())
        assert page.get_by_role("heading", level=1).inner_text() == "What the guideline says for this patient"
        points = page.locator("#b12-points use")
        assert points.count() == 3
        boxes = [points.nth(i).bounding_box() for i in range(3)]
        assert all(b and b["width"] > 0 for b in boxes)
        xs, ys = [b["x"] for b in boxes], [b["y"] for b in boxes]
        assert xs == sorted(xs)  # by date
        assert ys[2] < ys[1] < ys[0]  # 407 > 292 > 176 pg/mL: higher on the screen
        assert page.locator("#dose-markers use").count() == 2
        assert page.locator("#homocysteine-points use").count() == 2
        figure = page.get_by_role("img").first.get_attribute("aria-label")
        assert "3 result(s)" in figure and "homocysteine 14 on 2025-06-20, 9 on 2025-10-24" in figure
        page.screenshot(path=str(shots / "patient-page-history.png"), full_page=True)
        page.goto(pages["seed"].as_uri())
        assert page.locator("#b12-points use").count() == 1
        page.set_viewport_size({"width": 1200, "height": 1500})
        page.screenshot(path=str(shots / "patient-page.png"), full_page=False)
        page.emulate_media(media="print")
        assert page.locator("details").first.is_hidden()  # provenance stays off the printed page
        browser.close()
    assert outside == [], f"the page fetched {outside[:3]}"
    assert (shots / "patient-page.png").stat().st_size > 20_000


@pytest.mark.parametrize("name", ["overdue-dose", "metabolic-deficiency", "same-day-conflicting-b12", "no-b12-result"])
def test_every_kind_of_patient_gets_a_page(name, tmp_path):
    html = page_of(EXAMPLES / f"{name}.ttl", tmp_path).read_text(encoding="utf-8")
    assert "<svg" in html and "What the guideline says for this patient" in html
