"""The documentation site as a reader gets it: built with `mkdocs build --strict`, served over
loopback HTTP and read in Debian's Chromium at 1280 × 800."""

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import chromium

from nncards.registry import registry

ROOT = Path(__file__).resolve().parent.parent
VIEWPORT = {"width": 1280, "height": 800}
# the batch normalization page and three others: the longest example data (a 2-D convolution's
# images), many inputs (LSTM), a variadic socket (Concatenate)
CARD_PAGES = ["layer_BatchNormalization", "layer_Conv2D", "layer_LSTM", "mergeLayer_Concatenate"]

# elements inside the page's content that scroll sideways (their content is wider than they are)
SIDEWAYS_SCROLLERS = """() => [...document.querySelectorAll('.md-content *')]
    .filter(e => e.scrollWidth > e.clientWidth + 1 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))
    .map(e => e.tagName + '.' + e.className + ': ' + e.textContent.slice(0, 60))"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return site


@pytest.fixture(scope="module")
def site_url(site):
    """The built site on a loopback HTTP server, stopped after the module."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def page(site_url):
    with chromium() as browser:
        yield browser.new_page(viewport=VIEWPORT)


def plain(markdown: str) -> str:
    """The first words of a help text as the page shows them (no Markdown marks)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    return " ".join(text.replace("`", "").replace("**", "").split())[:40]


def test_site_builds_strict_with_card_images_and_titles(site):
    page = (site / "cards/layer_BatchNormalization/index.html").read_text()
    assert "<title>Batch normalization layer - nncards</title>" in page
    assert 'src="../../assets/cards/layer_BatchNormalization.svg"' in page
    assert (site / "assets/cards/layer_BatchNormalization.svg").read_text().startswith("<svg")
    pack_page = (site / "card-packs/index.html").read_text()  # the pack's files included, not their markers
    assert "8&lt;" not in pack_page and "example_Rescaling" in pack_page and "nncards_example_pack:cards" in pack_page


@pytest.mark.parametrize("card_id", CARD_PAGES)
def test_card_page_fits_1280_pixels_with_every_help_visible(page, site_url, card_id):
    card = registry().get(card_id)
    page.goto(f"{site_url}/cards/{card_id}/")
    assert page.title() == f"{card.title} - nncards"
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"
    assert page.evaluate(SIDEWAYS_SCROLLERS) == []
    for port in card.inputs():
        help = page.locator(f"#input-{port.id} .nn-port-help")
        help.scroll_into_view_if_needed()
        box = help.bounding_box()
        assert help.is_visible() and box is not None, port.id
        assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"], (port.id, box)
        assert box["width"] >= 300, f"{port.id}: the help has {box['width']} px"  # room for a line of words
        assert plain(port.help) in " ".join(help.inner_text().split()), port.id


@pytest.mark.parametrize("guide", ["", "getting-started/", "rest-api/", "card-packs/", "models-in-and-out/",
                                   "benchmarks/", "ray/", "security/"])
def test_guide_fits_1280_pixels(page, site_url, guide):
    page.goto(f"{site_url}/{guide}")
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1] and page.evaluate(SIDEWAYS_SCROLLERS) == []


def test_nav_holds_every_card_page_under_its_category(page, site_url):
    page.goto(f"{site_url}/")
    links = page.eval_on_selector_all(
        "nav.md-nav--primary a.md-nav__link[href]",
        "links => links.map(a => [new URL(a.href).pathname, a.textContent.trim()])")
    titles = dict(links)
    for card in registry().cards.values():
        assert titles.get(f"/cards/{card.id}/") == card.title, card.id
    page.goto(f"{site_url}/cards/layer_BatchNormalization/")
    trail = page.locator(".md-path").inner_text().split()
    assert trail[-2:] == ["Layers", "Normalization"]


def test_search_for_momentum_finds_batch_normalization(page, site_url):
    page.goto(f"{site_url}/")
    page.locator("label.md-search__icon, .md-search__input").first.click()
    # typed key by key, as a reader does: the search box reads key presses
    page.locator("input.md-search__input").press_sequentially("momentum", delay=20)
    results = page.locator(".md-search-result__item a")
    results.first.wait_for(timeout=60000)  # the search worker fetches and indexes the whole site first
    hrefs = results.evaluate_all("links => links.map(a => new URL(a.href).pathname)")
    assert "/cards/layer_BatchNormalization/" in hrefs, hrefs
