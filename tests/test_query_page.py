"""The query page of ``b12kg serve`` in a real browser (Debian's Chromium, headless, driven by Playwright):
YASGUI loads from the endpoint itself, runs the first research tab and shows a table of rows. The
screenshot is kept (``B12KG_SCREENSHOTS=DIR`` writes it there; docs/img holds the one in the docs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from b12kg import cohort
from b12kg.serve import Endpoint
from b12kg.serve_api import yasgui_dir
from b12kg.store import EmbeddedStore
from conftest import EXAMPLES, SEED_AS_OF, require_binary

require_binary("chromium", "the query page test needs Debian's chromium: apt-get install chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if yasgui_dir() is None:
        pytest.fail("the YASGUI files are not installed: npm ci --prefix ui", pytrace=False)
    path = tmp_path_factory.mktemp("store") / "db"
    store = EmbeddedStore(path)
    cohort.load(store, sorted(EXAMPLES.glob("*.ttl")))
    cohort.derive(store, as_of=SEED_AS_OF)
    store.close()
    with Endpoint(path, port=0) as endpoint:
        yield endpoint


def test_the_query_page_runs_a_query_and_shows_a_table(served, tmp_path):
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(f"http://127.0.0.1:{served.port}/") else None)
        page.goto(f"http://127.0.0.1:{served.port}/")
        assert page.locator(".tabPanel").count() >= 1
        tabs = page.locator(".tabsList .tab").all_inner_texts()
        assert "due-in-window" in " ".join(tabs) and "overdue-doses" in " ".join(tabs)
        page.click(".yasqe_queryButton")
        page.wait_for_selector(".yasr table tbody tr", timeout=30_000)
        rows = page.locator(".yasr table tbody tr").all_inner_texts()
        assert len(rows) > 10 and any("stmt-treatment-2" in r for r in rows)
        assert page.get_by_role("heading", level=1).inner_text().startswith("b12kg")
        shots = Path(os.environ.get("B12KG_SCREENSHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "serve-query-page.png"), full_page=False)
        browser.close()
    assert outside == [], f"the page reached beyond the endpoint: {outside[:3]}"
    assert (shots / "serve-query-page.png").stat().st_size > 10_000
