"""The editor (editor/ built into assets/editor), driven in Debian's Chromium against a real `nncards serve`.

Cards are dragged from the palette and wires from socket to socket with real pointer moves; the
numbers the editor shows after a run are checked against `nncards.run` on the same data.

The documentation's screenshots are taken by three of these tests when asked:
`NNCARDS_EDITOR_SCREENSHOTS=docs/img python -m pytest tests/test_editor.py -k "cnn or epoch or inspected"`.
"""

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LiveServer, chromium
from graphs import edge, node
from playwright.sync_api import Page, expect

import nncards

SMALL = {"width": 1280, "height": 720}
DOCS = {"width": 1440, "height": 900}
BN = "batch_normalization_1"
RUN_TIMEOUT = 150_000  # ms: the first validation loads TensorFlow, and a run may wait for a busy machine
SCREENSHOTS = os.environ.get("NNCARDS_EDITOR_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, live_server) -> Page:
    """A fresh browser context (empty local storage) on the editor, catalogue loaded."""
    context = browser.new_context(viewport=SMALL, accept_downloads=True)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(live_server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    yield page
    context.close()
    assert not problems, problems


def box(page: Page, test_id: str) -> dict:
    return page.get_by_test_id(test_id).bounding_box()


def centre(page: Page, test_id: str) -> tuple[float, float]:
    b = box(page, test_id)
    return b["x"] + b["width"] / 2, b["y"] + b["height"] / 2


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


def wire_by_keyboard(page: Page, source: str, source_port: str, target: str, target_port: str) -> None:
    # React Flow keeps a node hidden until it has measured it, and a hidden socket cannot take the
    # focus: a press right after the card is added would go to whatever had the focus (it did, once
    # in some 17 CI runs). Each socket is awaited visible, and the pick awaited before the drop.
    source_socket = page.get_by_test_id(f"port-{source}-out-{source_port}")
    expect(source_socket).to_be_visible()
    source_socket.press("Enter")
    expect(page.get_by_test_id("notice")).to_contain_text(f"Picked {source}.{source_port}:")
    target_socket = page.get_by_test_id(f"port-{target}-in-{target_port}")
    expect(target_socket).to_be_visible()
    target_socket.press("Enter")
    expect(page.get_by_test_id(f"edge-{source}-{source_port}-{target}-{target_port}")).to_have_count(1)


def select(page: Page, node_id: str) -> None:
    page.get_by_test_id(f"node-{node_id}").locator(".node-header").click()


def set_param(page: Page, node_id: str, port: str, text: str) -> None:
    """Types into the form field and applies it with Enter, as a user does."""
    select(page, node_id)
    field = page.get_by_test_id(f"param-{port}")
    field.fill(text)
    field.press("Enter")


def numbers(page: Page, test_id: str) -> np.ndarray:
    return np.array(json.loads(page.get_by_test_id(test_id).text_content()), dtype=float)


def stored_graph(page: Page) -> dict:
    page.wait_for_timeout(300)  # the autosave is debounced
    return json.loads(page.evaluate("localStorage.getItem('nncards.editor.graph')"))


def viewport_transform(page: Page) -> str:
    return page.locator(".react-flow__viewport").get_attribute("style")


def build_bn_by_keyboard(page: Page, with_output: bool = True) -> None:
    """Input (shape 2) → batch normalization (→ Output), added with Enter and wired by keyboard."""
    add_by_keyboard(page, "input", "input")
    add_by_keyboard(page, "layer_BatchNormalization", "batch normalization")
    set_param(page, "input_1", "shape", "2")
    wire_by_keyboard(page, "input_1", "output", BN, "input")
    if with_output:
        add_by_keyboard(page, "output", "output")
        wire_by_keyboard(page, BN, "output", "output_1", "input")


def fit_on(page: Page, inputs: np.ndarray, targets: np.ndarray, epochs: int) -> None:
    """Chooses a fit of the graph built by `build_bn_by_keyboard` on these samples (as CSV)."""
    page.get_by_test_id("run-mode-fit").check()
    page.get_by_test_id("fit-inputs-input_1").fill("\n".join(",".join(map(str, row)) for row in inputs))
    page.get_by_test_id("fit-targets-output_1").fill("\n".join(",".join(map(str, row)) for row in targets))
    page.locator("[name=epochs]").fill(str(epochs))


CNN = [  # card, search text, node id, drop point at 1280×720 (sockets kept 40 px from the canvas'
    # edges, where a wire being dragged scrolls the view)
    ("input", "input", "input_1", (290, 90)),
    ("layer_Conv2D", "conv2d", "conv2d_1", (500, 90)),
    ("layer_BatchNormalization", "batch normalization", BN, (710, 90)),
    ("layer_ReLU", "relu", "re_lu_1", (290, 300)),
    ("layer_Flatten", "flatten", "flatten_1", (500, 300)),
    ("layer_Dense", "dense", "dense_1", (710, 300)),
    ("output", "output", "output_1", (500, 470)),
]


def test_a_cnn_built_with_pointer_drags_fits_the_view_zooms_pans_and_undoes_a_deletion(page):
    for card, search, _, point in CNN:
        drag_card(page, card, search, point)
    for _, _, node_id, _ in CNN:
        expect(page.get_by_test_id(f"node-{node_id}")).to_be_visible()
    ids = [node_id for _, _, node_id, _ in CNN]
    for source, target in zip(ids, ids[1:]):
        drag_wire(page, source, "output", target, "input")
        expect(page.get_by_test_id(f"edge-{source}-output-{target}-input")).to_have_count(1)
    set_param(page, "input_1", "shape", "8, 8, 1")
    set_param(page, "conv2d_1", "filters", "4")
    set_param(page, "conv2d_1", "kernel_size", "3, 3")
    set_param(page, "dense_1", "units", "2")

    # Live validation puts the inferred shapes on the wires (the first validation of a fresh
    # server may wait for TensorFlow to load).
    expect(page.get_by_test_id("errors")).to_contain_text("The graph is valid.", timeout=RUN_TIMEOUT)
    expect(page.get_by_test_id(f"edge-label-conv2d_1-output-{BN}-input")).to_have_text("(None, 6, 6, 4)")
    expect(page.get_by_test_id("edge-flatten_1-output-dense_1-input")).to_contain_text("(None, 144)")
    # Compact cards: only what differs from the defaults is on the card.
    expect(page.get_by_test_id("node-conv2d_1").locator(".param-row")).to_have_count(2)

    # Fit view: every card inside the canvas.
    page.get_by_test_id("fit-view").click()
    page.wait_for_timeout(400)
    canvas = box(page, "canvas")
    for node_id in ids:
        b = box(page, f"node-{node_id}")
        assert canvas["x"] <= b["x"] and b["x"] + b["width"] <= canvas["x"] + canvas["width"], node_id
        assert canvas["y"] <= b["y"] and b["y"] + b["height"] <= canvas["y"] + canvas["height"], node_id

    # Pan by dragging the background (the margin fit-view leaves), zoom with the wheel.
    before = viewport_transform(page)
    mouse_drag(page, (canvas["x"] + canvas["width"] / 2, canvas["y"] + 6), (canvas["x"] + canvas["width"] / 2 + 80, canvas["y"] + 60))
    panned = viewport_transform(page)
    assert panned != before
    page.mouse.move(canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2)
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(300)
    assert viewport_transform(page) != panned
    page.get_by_test_id("fit-view").click()
    page.wait_for_timeout(300)

    # Delete by key after a click; undo brings the node back with both its wires.
    select(page, BN)
    page.keyboard.press("Delete")
    expect(page.get_by_test_id(f"node-{BN}")).to_have_count(0)
    expect(page.locator("[data-testid^=edge-conv2d_1-output]")).to_have_count(0)
    expect(page.get_by_test_id("node-conv2d_1")).to_contain_text("unused")
    page.keyboard.press("Control+z")
    expect(page.get_by_test_id(f"node-{BN}")).to_be_visible()
    expect(page.get_by_test_id(f"edge-conv2d_1-output-{BN}-input")).to_have_count(1)
    expect(page.get_by_test_id(f"edge-{BN}-output-re_lu_1-input")).to_have_count(1)
    assert len(stored_graph(page)["edges"]) == 6

    if SCREENSHOTS:
        page.set_viewport_size(DOCS)
        page.get_by_test_id("arrange").click()
        page.wait_for_timeout(800)
        select(page, BN)
        page.get_by_test_id("palette-search").fill("")
        page.screenshot(path=str(Path(SCREENSHOTS) / "editor-cnn.png"))


def test_momentum_typed_key_by_key_is_never_run_and_the_valid_value_runs_exactly(page, live_server):
    build_bn_by_keyboard(page)
    expect(page.get_by_test_id("errors")).to_contain_text("The graph is valid.", timeout=RUN_TIMEOUT)
    runs_before = live_server.client.get("/runs").json()["total"]

    select(page, BN)
    momentum = page.get_by_test_id("param-momentum")
    momentum.click()
    momentum.press_sequentially("1.5", delay=60)
    momentum.press("Enter")
    momentum.press("Tab")  # leaving the field does not apply it either
    expect(momentum).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("run")).to_be_disabled()
    expect(page.get_by_test_id("run-blocked")).to_contain_text("Momentum must be between 0 and 1, got 1.5")
    expect(page.get_by_test_id(f"node-problems-{BN}")).to_be_visible()
    expect(page.get_by_test_id(f"node-{BN}").locator(".param-row[data-port=momentum]")).to_contain_text("0.99")
    expect(page.get_by_test_id("errors")).to_contain_text("Momentum must be between 0 and 1, got 1.5 (not applied)")
    page.get_by_test_id("run").click(force=True)
    page.wait_for_timeout(500)
    assert live_server.client.get("/runs").json()["total"] == runs_before
    saved = next(n for n in stored_graph(page)["nodes"] if n["id"] == BN)
    assert saved["params"] == {}  # neither 1 (the first key) nor 1.5

    # A valid value, applied with Enter, is what the card shows, what is saved and what runs.
    momentum.fill("0.9")
    momentum.press("Enter")
    expect(page.get_by_test_id(f"node-{BN}").locator(".param-row[data-port=momentum]")).to_contain_text("0.9")
    expect(page.get_by_test_id("run")).to_be_enabled(timeout=30_000)
    page.get_by_test_id("run").click()
    moving_mean_id = f"run-weight-{BN}-moving_mean"
    expect(page.get_by_test_id(moving_mean_id)).to_be_visible(timeout=RUN_TIMEOUT)
    expect(page.get_by_test_id("run-result")).to_contain_text("succeeded")

    data = numbers(page, "run-input-input_1")
    assert data.shape == (8, 2) and data.std() > 0.1
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
    np.testing.assert_allclose(numbers(page, moving_mean_id), weights["moving_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(numbers(page, f"run-weight-{BN}-moving_variance"), weights["moving_variance"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(numbers(page, "run-output-1-output_1"), reference["steps"][1]["outputs"]["output_1"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(numbers(page, moving_mean_id), 0.1 * data.mean(axis=0), rtol=1e-4, atol=1e-6)

    # The results belong to that graph: changing it clears them.
    set_param(page, BN, "epsilon", "0.01")
    expect(page.get_by_test_id(moving_mean_id)).to_have_count(0)


def test_replacing_a_wire_is_announced_and_undone_and_a_wrong_type_is_refused(page):
    build_bn_by_keyboard(page, with_output=False)
    add_by_keyboard(page, "input", "input")  # input_2
    wire_by_keyboard(page, "input_2", "output", BN, "input")
    expect(page.get_by_test_id("notice")).to_contain_text(f"Replaced the wire input_1.output → {BN}.input")
    expect(page.get_by_test_id(f"edge-input_1-output-{BN}-input")).to_have_count(0)
    expect(page.get_by_test_id("node-input_1")).to_contain_text("unused")
    page.keyboard.press("Control+z")
    expect(page.get_by_test_id(f"edge-input_1-output-{BN}-input")).to_have_count(1)
    expect(page.get_by_test_id(f"edge-input_2-output-{BN}-input")).to_have_count(0)

    # A wire between different types: refused, with the reason naming both types.
    page.get_by_test_id(f"node-{BN}").locator(".node-expand").click()
    page.get_by_test_id("fit-view").click()
    page.wait_for_timeout(400)
    drag_wire(page, "input_1", "output", BN, "gamma_initializer")
    notice = page.get_by_test_id("notice")
    expect(notice).to_contain_text("types differ")
    expect(notice).to_contain_text("NeuralNetworkInitializer")
    expect(page.get_by_test_id(f"edge-input_1-output-{BN}-gamma_initializer")).to_have_count(0)


def test_a_fit_shows_each_epoch_and_a_curve_and_the_run_is_listed_after_a_reload(page, live_server):
    build_bn_by_keyboard(page)
    samples = np.arange(24).reshape(12, 2) / 10
    fit_on(page, samples, 2 * samples, epochs=3)
    expect(page.get_by_test_id("run")).to_be_enabled(timeout=RUN_TIMEOUT)
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id(f"run-weight-{BN}-moving_mean")).to_be_attached(timeout=RUN_TIMEOUT)

    run_id = page.locator("[data-run-id]").get_attribute("data-run-id")
    result = live_server.client.get(f"/runs/{run_id}").json()
    losses = result["steps"][0]["history"]["loss"]
    assert len(losses) == 3 and result["steps"][1]["kind"] == "predict"
    # One progress line per epoch, and the curves drawn from the `epoch` events.
    expect(page.get_by_test_id("run-epochs").locator("li")).to_have_count(3)
    curve = page.get_by_test_id("loss-curve")
    expect(curve).to_have_attribute("data-points", "3")
    expect(curve).to_have_attribute("data-metrics", "loss|mae")
    expect(curve.locator("canvas")).to_have_count(1)
    expect(curve).to_contain_text(f"loss {float(f'{losses[-1]:.4g}'):g}")
    assert numbers(page, "run-output-1-output_1").shape == (12, 2)

    if SCREENSHOTS:
        page.set_viewport_size(DOCS)
        page.get_by_test_id("arrange").click()
        page.wait_for_timeout(800)
        page.get_by_test_id("palette-search").fill("")
        page.get_by_test_id("canvas").click(position={"x": 8, "y": 8})  # nothing selected: room for the results
        page.get_by_test_id("run-result").scroll_into_view_if_needed()
        page.screenshot(path=str(Path(SCREENSHOTS) / "editor-fit.png"))

    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    item = page.get_by_test_id(f"run-item-{run_id}")
    expect(item).to_be_visible()
    item.click()
    expect(page.get_by_test_id("run-result")).to_contain_text("succeeded")
    expect(page.get_by_test_id("loss-curve")).to_have_attribute("data-points", "3")


def column(table, cell: str) -> np.ndarray:
    """The numbers a table of the statistics panel shows in the cells of one class."""
    return np.array([float(text) for text in table.locator(f"td.{cell}").all_text_contents()])


def test_a_fit_inspected_live_shows_badges_and_the_bn_cards_before_after_with_means_at_beta(page, live_server):
    build_bn_by_keyboard(page)
    samples = np.random.default_rng(5).normal([5.0, -3.0], [2.0, 0.5], (16, 2)).round(3)
    fit_on(page, samples, samples / 4, epochs=3)
    page.get_by_test_id("inspect-after").check()
    page.get_by_test_id("inspect-mode").select_option("training")
    page.get_by_test_id("inspect-during").check()
    page.locator("[name=inspect_every]").fill("1")
    select(page, BN)
    expect(page.get_by_test_id("card-statistics")).to_have_count(0)  # no statistics yet: a hint

    # Until the run's result is let through, all the editor knows comes from the `inspect` events.
    result_route = re.compile(r".*/api/v1/runs/[0-9a-f-]+$")
    page.route(result_route, lambda route: route.fulfill(json={"status": "running"}) if route.request.method == "GET"
               else route.continue_())
    expect(page.get_by_test_id("run")).to_be_enabled(timeout=RUN_TIMEOUT)
    page.get_by_test_id("run").click()
    panel = page.get_by_test_id("card-statistics")
    passes = panel.get_by_test_id("statistics-pass").locator("option")
    expect(passes).to_have_count(1 + 3, timeout=RUN_TIMEOUT)  # "latest", then the fit's epochs 1 to 3
    expect(passes.first).to_contain_text("after epoch 3, inference mode")
    for card in ("input_1", BN):
        expect(page.get_by_test_id(f"stats-badge-{card}").locator("rect").first).to_be_attached()
    expect(panel.get_by_test_id("before-after")).to_contain_text("Inference mode subtracts the moving mean")
    page.unroute(result_route)

    # The result adds the inspect step (training mode), which the panel now shows.
    expect(page.get_by_test_id("run-inspected-2")).to_be_visible(timeout=RUN_TIMEOUT)
    expect(passes).to_have_count(1 + 3 + 1)
    run_id = page.locator("[data-run-id]").get_attribute("data-run-id")
    result = live_server.client.get(f"/runs/{run_id}").json()
    assert [i["epoch"] for i in result["steps"][0]["inspections"]] == [1, 2, 3]
    assert result["steps"][2]["kind"] == "inspect" and result["steps"][2]["training"] is True
    beta = np.asarray(result["layers"][BN]["weights"]["beta"])
    assert np.abs(beta).max() > 1e-3  # trained away from its initial zeros

    expect(panel.get_by_test_id(f"channel-plot-{BN}-output")).to_have_attribute("data-channels", "2")
    view = panel.get_by_test_id("before-after")
    for side in ("input", "output"):  # the first batch: 8 samples of 2 channels in each histogram
        histogram = view.get_by_test_id(f"histogram-{side}")
        expect(histogram).to_have_attribute("data-total", "16")
        assert histogram.locator("rect").count() >= 2
    batch = samples[:8]
    np.testing.assert_allclose(column(view.get_by_test_id("batch-vs-moving"), "batch_mean"), batch.mean(axis=0), rtol=1e-3)

    means_table = view.get_by_test_id("mean-vs-beta")
    tolerance = float(view.get_by_test_id("mean-vs-beta-tolerance").text_content())
    assert 0 < tolerance <= 1e-2
    np.testing.assert_allclose(column(means_table, "beta"), beta, rtol=1e-3)
    np.testing.assert_allclose(column(means_table, "mean"), beta, atol=tolerance)
    expect(view.get_by_test_id("mean-vs-beta-verdict")).to_have_attribute("data-within", "true")

    if SCREENSHOTS:
        page.set_viewport_size(DOCS)
        page.get_by_test_id("fit-view").click()
        page.wait_for_timeout(800)
        page.get_by_test_id("palette-search").fill("")
        page.locator(".inspector").evaluate("inspector => { inspector.style.maxHeight = '100%'; }")
        view.scroll_into_view_if_needed()
        page.screenshot(path=str(Path(SCREENSHOTS) / "editor-inspect.png"))


def test_the_statistics_hint_is_offered_on_cards_making_tensors_only(page):
    add_by_keyboard(page, "layer_Dense", "dense")
    add_by_keyboard(page, "initializer_GlorotUniform", "glorot uniform")
    hint = page.get_by_test_id("statistics-hint")
    select(page, "dense_1")  # its `output` is a tensor (its `layer`, the layer object, is not)
    expect(hint).to_have_text('Statistics of this card: tick "Card statistics" in the Run panel, then Run.')
    select(page, "glorot_uniform_1")  # its one output is an initializer object
    expect(page.get_by_test_id("node-id")).to_have_value("glorot_uniform_1")
    expect(page.locator(".inspector")).to_contain_text("Glorot uniform initializer")
    expect(hint).to_have_count(0)


def test_a_cancelled_fit_keeps_the_statistics_its_inspect_events_brought(page):
    build_bn_by_keyboard(page)
    samples = np.arange(8.0).reshape(4, 2)
    fit_on(page, samples, samples, epochs=100_000)
    page.get_by_test_id("inspect-during").check()
    page.locator("[name=inspect_every]").fill("2")
    select(page, BN)
    expect(page.get_by_test_id("run")).to_be_enabled(timeout=RUN_TIMEOUT)
    page.get_by_test_id("run").click()
    passes = page.get_by_test_id("statistics-pass").locator("option")
    expect(passes.nth(2)).to_be_attached(timeout=RUN_TIMEOUT)  # "latest" and two passes, while the fit goes on
    page.get_by_test_id("run-result").get_by_role("button", name="Cancel").click()
    expect(page.get_by_test_id("run-result")).to_contain_text("cancelled", timeout=RUN_TIMEOUT)
    # The cancelled fit is not among the result's steps; its passes stay, and so do the badges.
    expect(passes.first).to_contain_text("after epoch")
    expect(page.get_by_test_id(f"stats-badge-{BN}")).to_be_attached()
    expect(page.get_by_test_id("before-after")).to_be_visible()


def test_save_load_and_new_ask_before_replacing_unsaved_work(page, tmp_path):
    build_bn_by_keyboard(page, with_output=False)
    set_param(page, BN, "momentum", "0.9")
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

    set_param(page, BN, "epsilon", "0.01")  # unsaved work
    page.get_by_test_id("clear").click()
    page.get_by_test_id("confirm-no").click()
    expect(page.locator(".card-node")).to_have_count(2)
    page.get_by_test_id("clear").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.locator(".card-node")).to_have_count(0)
    page.get_by_test_id("load").set_input_files(saved)
    expect(page.get_by_test_id(f"edge-input_1-output-{BN}-input")).to_have_count(1)
    assert stored_graph(page) == graph

    # An Object param is a sub-form, applied as a whole once every box in it is valid.
    select(page, BN)
    page.get_by_test_id("param-renorm_clipping-enabled").check()
    rmax = page.get_by_test_id("param-renorm_clipping.rmax")
    rmax.fill("3x")
    rmax.press("Enter")
    expect(page.get_by_test_id("run-blocked")).to_contain_text("must be a number")
    rmax.fill("3")
    rmax.press("Enter")
    expect(page.get_by_test_id(f"node-{BN}").locator(".param-row[data-port=renorm_clipping]")).to_contain_text('{"rmax":3}')
    assert next(n for n in stored_graph(page)["nodes"] if n["id"] == BN)["params"]["renorm_clipping"] == {"rmax": 3}


def test_time_to_interactive(browser, live_server):
    """The editor is usable (catalogue loaded, palette drawn) within a few seconds of loading."""
    context = browser.new_context(viewport=SMALL)
    page = context.new_page()
    start = time.perf_counter()
    page.goto(live_server.url + "/")
    expect(page.get_by_test_id("palette-quick-layer_BatchNormalization")).to_be_visible()
    elapsed = time.perf_counter() - start
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    ready_ms = page.evaluate("performance.getEntriesByName('nncards-ready')[0].startTime")
    context.close()
    print(f"editor time to interactive: {elapsed * 1000:.0f} ms first load (goto to palette shown), "
          f"{ready_ms:.0f} ms after navigation start on reload")
    assert elapsed < 5 and ready_ms < 5000


def test_with_a_server_token_the_editor_asks_for_it_and_sends_it_on_every_request(browser, tmp_path):
    """`nncards serve --token`: the editor asks for the token (or takes it from `/?token=…`),
    keeps it for the tab and sends it as a bearer token, the run's event stream included."""
    server = LiveServer(tmp_path / "data", "--token", "s3cret").start()
    context = browser.new_context(viewport=SMALL)
    try:
        page = context.new_page()
        seen = []
        page.on("request", lambda request: seen.append((request.url, request.headers.get("authorization"))))
        page.goto(server.url + "/")
        page.get_by_test_id("token-input").fill("wrong")
        page.get_by_test_id("token-input").press("Enter")
        expect(page.get_by_test_id("token-form")).to_contain_text("refused")
        page.goto(server.url + "/?token=s3cret")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        assert "token" not in page.url  # not left in the address bar
        build_bn_by_keyboard(page)
        expect(page.get_by_test_id("run")).to_be_enabled(timeout=RUN_TIMEOUT)
        page.get_by_test_id("run").click()
        expect(page.get_by_test_id("run-result")).to_contain_text("succeeded", timeout=RUN_TIMEOUT)
        page.reload()  # kept for the tab
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.get_by_test_id("runs").locator("[data-testid^=run-item-]")).to_have_count(1)
        api = [(url, auth) for url, auth in seen if "/api/v1/" in url and "token=s3cret" not in url]
        since = next(i for i, (_, auth) in enumerate(api) if auth == "Bearer s3cret")
        assert {"cards", "types", "graphs/validate", "runs", "events"} <= {
            part for url, _ in api[since:] for part in ("cards", "types", "graphs/validate", "runs", "events") if part in url}
        assert all(auth == "Bearer s3cret" for _, auth in api[since:]), [x for x in api[since:] if x[1] != "Bearer s3cret"]
    finally:
        context.close()
        server.stop()


def test_multi_select_copy_paste_and_a_problem_that_focuses_its_node(page):
    build_bn_by_keyboard(page, with_output=False)
    page.get_by_test_id("canvas").click(position={"x": 8, "y": 8})
    page.keyboard.press("Control+a")
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    expect(page.locator(".card-node")).to_have_count(4)
    expect(page.get_by_test_id(f"edge-input_2-output-batch_normalization_2-input")).to_have_count(1)
    page.keyboard.press("Delete")  # the pasted copies are the selection
    expect(page.locator(".card-node")).to_have_count(2)
    add_by_keyboard(page, "output", "output")  # not wired: a problem on output_1
    page.get_by_test_id("canvas").click(position={"x": 8, "y": 8})
    expect(page.locator(".card-node.selected")).to_have_count(0)
    page.get_by_test_id("errors").get_by_role("button", name="output_1").click(timeout=RUN_TIMEOUT)
    expect(page.get_by_test_id("node-output_1")).to_have_class(re.compile("selected"))
    expect(page.locator(".inspector h2")).to_have_text("Output")

    # Deleting by keyboard: Tab onto a card, Enter selects it, Delete removes it.
    page.get_by_test_id("rf__node-input_1").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Delete")
    expect(page.get_by_test_id("node-input_1")).to_have_count(0)
    page.keyboard.press("Control+z")
    expect(page.get_by_test_id(f"edge-input_1-output-{BN}-input")).to_have_count(1)
