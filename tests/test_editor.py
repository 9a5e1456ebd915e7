"""The reference editor (assets/editor), driven in Debian's Chromium against a real `nncards serve`.

Cards are dragged from the palette and wires from socket to socket with real mouse moves; the
numbers the editor shows after a run are checked against `nncards.run` on the same data and
against the batch normalization update rule itself.

The documentation's screenshot (docs/img/editor.png) is taken by the pipeline test:
`NNCARDS_EDITOR_SCREENSHOT=docs/img/editor.png python -m pytest tests/test_editor.py -k pipeline`.
"""

import json
import os

import numpy as np
import pytest
from graphs import edge, node
from playwright.sync_api import Page, expect, sync_playwright

import nncards

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}
BN = "batch_normalization_1"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server) -> Page:
    """A fresh browser context (empty local storage) on the editor, catalogue loaded."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(live_server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    yield page
    context.close()
    assert not problems, problems


def centre(page: Page, test_id: str) -> tuple[float, float]:
    box = page.get_by_test_id(test_id).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def mouse_drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()


def drag_card(page: Page, card_id: str, search: str, to: tuple[float, float]) -> None:
    page.get_by_test_id("palette-search").fill(search)
    mouse_drag(page, centre(page, f"palette-card-{card_id}"), to)


def drag_wire(page: Page, source: str, source_port: str, target: str, target_port: str) -> None:
    mouse_drag(page, centre(page, f"port-{source}-out-{source_port}"), centre(page, f"port-{target}-in-{target_port}"))


def add_by_keyboard(page: Page, card_id: str, search: str) -> None:
    page.get_by_test_id("palette-search").fill(search)
    page.get_by_test_id(f"palette-card-{card_id}").press("Enter")


def select(page: Page, node_id: str) -> None:
    page.get_by_test_id(f"node-{node_id}").locator(".node-header").click()


def set_param(page: Page, node_id: str, port: str, text: str) -> None:
    select(page, node_id)
    page.get_by_test_id(f"param-{port}").fill(text)


def numbers(page: Page, test_id: str) -> np.ndarray:
    return np.array(json.loads(page.get_by_test_id(test_id).text_content()), dtype=float)


def build_input_bn_by_keyboard(page: Page) -> None:
    """Input (shape 2) wired to batch normalization, added with Enter and wired by picking ports."""
    add_by_keyboard(page, "input", "input")
    add_by_keyboard(page, "layer_BatchNormalization", "batch normalization")
    set_param(page, "input_1", "shape", "2")
    page.get_by_test_id("port-input_1-out-output").press("Enter")
    page.get_by_test_id(f"port-{BN}-in-input").press("Enter")
    expect(page.get_by_test_id(f"edge-input_1-output-{BN}-input")).to_have_count(1)


def test_drag_and_drop_pipeline_runs_and_shows_the_moving_statistics(page):
    drag_card(page, "input", "input", (270, 160))
    drag_card(page, "layer_BatchNormalization", "batch normalization", (520, 110))
    drag_card(page, "output", "output", (900, 160))
    for node_id in ("input_1", BN, "output_1"):
        expect(page.get_by_test_id(f"node-{node_id}")).to_be_visible()
    drag_wire(page, "input_1", "output", BN, "input")
    drag_wire(page, BN, "output", "output_1", "input")
    set_param(page, "input_1", "shape", "2")
    set_param(page, BN, "momentum", "0.9")

    # Live validation puts the inferred shape on both wires and finds nothing wrong (the first
    # validation of a fresh server may wait for TensorFlow to load).
    expect(page.get_by_test_id("errors")).to_contain_text("The graph is valid.", timeout=60_000)
    for wire in (f"edge-input_1-output-{BN}-input", f"edge-{BN}-output-output_1-input"):
        expect(page.get_by_test_id(wire)).to_contain_text("(None, 2)")

    page.get_by_test_id("run").click()
    moving_mean_id = f"run-weight-{BN}-moving_mean"
    expect(page.get_by_test_id(moving_mean_id)).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("run-result")).to_contain_text("succeeded")

    data = numbers(page, "run-input-input_1")
    assert data.shape == (8, 2) and data.std() > 0.1
    shown_mean = numbers(page, moving_mean_id)
    shown_variance = numbers(page, f"run-weight-{BN}-moving_variance")
    shown_inference = numbers(page, "run-output-1-output_1")

    # The same run, computed here: the editor sent exactly the graph and the steps it shows.
    graph = {"schema_version": 1,
             "nodes": [node("input_1", "input", shape=[2]), node(BN, "layer_BatchNormalization", momentum=0.9),
                       node("output_1", "output")],
             "edges": [edge("input_1", "output", BN, "input"), edge(BN, "output", "output_1", "input")]}
    inputs = {"input_1": data.tolist()}
    reference = nncards.run({"graph": graph, "seed": 0, "steps": [
        {"kind": "call", "inputs": inputs, "training": True},
        {"kind": "call", "inputs": inputs, "training": False}]})
    assert reference["status"] == "succeeded", reference["error"]
    weights = reference["layers"][BN]["weights"]
    np.testing.assert_allclose(shown_mean, weights["moving_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shown_variance, weights["moving_variance"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shown_inference, reference["steps"][1]["outputs"]["output_1"], rtol=1e-5, atol=1e-5)
    # And the update rule itself: one training call from mean 0, variance 1, with momentum 0.9.
    np.testing.assert_allclose(shown_mean, 0.1 * data.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(shown_variance, 0.9 + 0.1 * data.var(axis=0), rtol=1e-4)

    if os.environ.get("NNCARDS_EDITOR_SCREENSHOT"):
        page.get_by_test_id("palette-search").fill("")
        select(page, BN)
        page.screenshot(path=os.environ["NNCARDS_EDITOR_SCREENSHOT"])


def test_fit_on_pasted_csv_draws_the_loss_curve_from_the_run_events(page, live_server):
    build_input_bn_by_keyboard(page)
    add_by_keyboard(page, "output", "output")
    page.get_by_test_id(f"port-{BN}-out-output").press("Enter")
    page.get_by_test_id("port-output_1-in-input").press("Enter")
    page.get_by_test_id("run-mode-fit").check()
    samples = np.arange(24).reshape(12, 2) / 10
    page.get_by_test_id("fit-inputs-input_1").fill("\n".join(f"{a},{b}" for a, b in samples))
    page.get_by_test_id("fit-targets-output_1").fill("\n".join(f"{a},{b}" for a, b in 2 * samples))
    page.locator("[name=epochs]").fill("3")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id(f"run-weight-{BN}-moving_mean")).to_be_visible(timeout=60_000)

    run_id = page.locator("[data-run-id]").get_attribute("data-run-id")
    result = live_server.client.get(f"/runs/{run_id}").json()
    losses = result["steps"][0]["history"]["loss"]
    assert len(losses) == 3 and result["steps"][1]["kind"] == "predict"
    # The curve is drawn from the `epoch` events alone: one point per epoch, the last value labelled.
    curve = page.get_by_test_id("loss-curve")
    assert len(curve.locator("polyline[data-metric=loss]").get_attribute("points").split()) == 3
    expect(curve).to_contain_text(f"loss {float(f'{losses[-1]:.4g}'):g}")
    assert numbers(page, "run-output-1-output_1").shape == (12, 2)


def test_a_wire_between_different_types_is_refused_with_a_reason(page):
    build_input_bn_by_keyboard(page)
    drag_wire(page, "input_1", "output", BN, "gamma_initializer")
    notice = page.get_by_test_id("notice")
    expect(notice).to_contain_text("types differ")
    expect(notice).to_contain_text("NeuralNetworkTensor")
    expect(notice).to_contain_text("NeuralNetworkInitializer")
    expect(page.get_by_test_id(f"edge-input_1-output-{BN}-gamma_initializer")).to_have_count(0)
    expect(page.locator("[data-testid^=edge-]")).to_have_count(1)


def test_validation_errors_are_shown_on_the_form_the_node_and_the_port(page):
    build_input_bn_by_keyboard(page)
    errors = page.get_by_test_id("errors")
    bn_node = page.get_by_test_id(f"node-{BN}")

    # Out of range for the schema: flagged in the form at once and never sent.
    set_param(page, BN, "momentum", "1.5")
    expect(page.get_by_test_id("param-momentum")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".inspector")).to_contain_text("Momentum must be between 0 and 1, got 1.5")
    expect(errors).to_contain_text("Momentum must be between 0 and 1, got 1.5 (not sent)")
    expect(bn_node).to_contain_text("Momentum must be between 0 and 1")
    expect(bn_node.locator(".row[data-port=momentum]")).to_contain_text("0.99")

    # Fits the schema but not the graph: the server's validation names the node and the port.
    set_param(page, BN, "momentum", "0.5")
    set_param(page, BN, "axis", "3")
    expect(errors).to_contain_text(f"{BN} · axis: axis must be between -2 and 1")
    expect(bn_node.locator(".node-problems")).to_contain_text("axis")
    expect(bn_node.locator(".row.port-error")).to_have_attribute("data-port", "axis")
    set_param(page, BN, "axis", "-1")
    expect(errors).to_contain_text("1 problem")  # only the missing Output remains
    expect(bn_node.locator(".row.port-error")).to_have_count(0)


def test_the_graph_survives_a_reload_and_a_save_load_round_trip(page, tmp_path):
    build_input_bn_by_keyboard(page)
    set_param(page, BN, "momentum", "0.9")
    placed = page.evaluate("JSON.parse(localStorage.getItem('nncards.editor.graph')).nodes[1].position.x")
    page.get_by_test_id(f"node-{BN}").locator(".node-header").press("ArrowRight")

    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id(f"edge-input_1-output-{BN}-input")).to_have_count(1)
    select(page, BN)
    expect(page.get_by_test_id("param-momentum")).to_have_value("0.9")

    with page.expect_download() as download:
        page.get_by_test_id("save").click()
    saved = tmp_path / "graph.json"
    download.value.save_as(saved)
    graph = json.loads(saved.read_text())
    assert [(n["id"], n["card"], n["params"]) for n in graph["nodes"]] == [
        ("input_1", "input", {"shape": [2]}), (BN, "layer_BatchNormalization", {"momentum": 0.9})]
    assert graph["edges"] == [edge("input_1", "output", BN, "input")]
    assert graph["nodes"][1]["position"]["x"] == placed + 10  # moved by the arrow key
    assert nncards.validate(graph)["shapes"][BN]["output"] == [None, 2]

    page.get_by_test_id("clear").click()
    expect(page.locator(".node")).to_have_count(0)
    page.get_by_test_id("load").set_input_files(saved)
    expect(page.get_by_test_id(f"edge-input_1-output-{BN}-input")).to_have_count(1)
    assert json.loads(page.evaluate("localStorage.getItem('nncards.editor.graph')")) == graph
