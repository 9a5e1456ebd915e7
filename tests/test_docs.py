"""Generated docs and card images, the mkdocs site, and the guides' examples run for real."""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import LiveServer

import nncards
from nncards import cli
from nncards.card import LayerCard, Params, param
from nncards.docs.card_image import render
from nncards.docs import main as docs_main
from nncards.card.keras_code import keras_code
from nncards.registry import registry
from nncards.contract.types import TYPES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BN_PAGE = DOCS / "cards" / "layer_BatchNormalization.md"

# CONTRACT §3.1: literal input -> (default as the page shows it, range or allowed values, or None)
BN_LITERALS = {
    "axis": ("`-1`", None),
    "momentum": ("`0.99`", "0 ≤ momentum ≤ 1"),
    "epsilon": ("`0.001`", "epsilon > 0"),
    "center": ("`true`", None),
    "scale": ("`true`", None),
    "renorm": ("`false`", None),
    "renorm_clipping": ("`null`", "object with keys `rmax`, `rmin`, `dmax` or null"),
    "renorm_momentum": ("`0.99`", "0 ≤ renorm_momentum ≤ 1"),
    "synchronized": ("`false`", None),
    "fused": ("`null`", "true or false or null"),
    "virtual_batch_size": ("`null`", "virtual_batch_size ≥ 1 or null"),
    "adjustment": ("`null`", "object with keys `scale`, `bias` or null"),
    "trainable": ("`true`", None),
    "name": ("`null`", None),
    "dtype": ("`\"float32\"`", "one of `\"float32\"`, `\"float16\"`, `\"bfloat16\"`, `\"float64\"`, "
              "`\"mixed_float16\"`, `\"mixed_bfloat16\"`"),
    "beta_initializer": ("`\"zeros\"`", None),
    "gamma_initializer": ("`\"ones\"`", None),
    "moving_mean_initializer": ("`\"zeros\"`", None),
    "moving_variance_initializer": ("`\"ones\"`", None),
    "beta_regularizer": ("`null`", None),
    "gamma_regularizer": ("`null`", None),
    "beta_constraint": ("`null`", None),
    "gamma_constraint": ("`null`", None),
}
BN_SOCKETS = {"input": "NeuralNetworkTensor", "mask": "NeuralNetworkTensor"}
INSTANCE_SOCKETS = {"beta_initializer": "NeuralNetworkInitializer", "gamma_regularizer": "NeuralNetworkRegularizer",
                    "gamma_constraint": "NeuralNetworkConstraint"}


def fenced_blocks(markdown: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", markdown, re.S | re.M)


def port_blocks(page: str, side: str = "input") -> dict[str, tuple[dict[str, str], str]]:
    """The port blocks of a card page: port id -> ({fact name: value}, help Markdown)."""
    blocks = {}
    for port, facts, help in re.findall(
            rf'<div class="nn-port" id="{side}-(\w+)" markdown>\n<div class="nn-port-facts" markdown>\n(.*?)</div>\n'
            r'<div class="nn-port-help" markdown>\n(.*?)</div>\n</div>', page, re.S):
        line = next(line for line in facts.splitlines() if line.startswith("Type: "))
        pairs = [fact.split(": ", 1) for fact in line.split(" · ")]
        blocks[port] = ({pair[0]: pair[-1] for pair in pairs}, help.strip())
    return blocks


def test_generated_docs_are_current(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    status = cli.main(["docs", "--check"])
    assert status == 0, capsys.readouterr().out


def test_batch_normalization_page_lists_every_input_with_default_and_range():
    page = BN_PAGE.read_text()
    blocks = port_blocks(page)
    for port, (default, allowed) in BN_LITERALS.items():
        assert port in blocks, f"{port} is missing from the page"
        facts, help = blocks[port]
        assert facts["Default"] == default, (port, facts)
        if allowed is not None:  # long lists of values go below the help
            assert facts.get("Allowed", help.rpartition("\n\nAllowed: ")[2]) == allowed, (port, facts, help)
        assert facts["Keras"] == f"`{port}`" and help
    for port, type_id in {**BN_SOCKETS, **INSTANCE_SOCKETS}.items():
        facts = blocks[port][0]
        assert facts["Type"] == f"[{type_id}](../types/{type_id}.md)"
        assert "wired" in facts["Set"]
    assert blocks["beta_initializer"][0]["Allowed"] == (
        "a wired card or a [shorthand identifier](../types/NeuralNetworkInitializer.md#shorthand-identifiers)")
    assert blocks["momentum"][0]["Type"] == "[Float](../types/Float.md)"
    assert "rmin ≤ rmax" not in blocks["renorm_clipping"][0]["Allowed"]  # cross-key rules live in the help
    assert "- `dmax` (d max; dmax ≥ 0 or null; default `null`): Bound of" in blocks["renorm_clipping"][1]
    assert page.startswith('---\ntitle: "Batch normalization layer"\n---\n')
    assert "![Batch normalization layer card](../assets/cards/layer_BatchNormalization.svg)" in page
    assert ("[`keras.layers.BatchNormalization`](https://www.tensorflow.org/api_docs/python/tf/keras/layers/"
            "BatchNormalization)") in page
    assert set(port_blocks(page, "output")) == {"layer", "output"}


def test_type_pages_link_every_port_of_their_type_to_its_block():
    """Each type page links every card port of its type, and each link lands on the port's block."""
    for card in registry().cards.values():
        for side, ports in (("input", card.inputs()), ("output", card.outputs)):
            for port in ports:
                type_page = (DOCS / "types" / f"{port.type}.md").read_text()
                assert f"(../cards/{card.id}.md#{side}-{port.id})" in type_page, (card.id, port.id)
    for type_page in (DOCS / "types").glob("*.md"):
        for card_id, anchor in re.findall(r"\(\.\./cards/(\w+)\.md#([\w-]+)\)", type_page.read_text()):
            assert f'id="{anchor}"' in (DOCS / "cards" / f"{card_id}.md").read_text(), (type_page.name, anchor)


def test_fixed_length_lists_read_exactly():
    page = (DOCS / "cards" / "layer_Conv2D.md").read_text()
    assert "list of exactly 2 items, each kernel_size[i] ≥ 1" in port_blocks(page)["kernel_size"][0]["Allowed"]
    assert " to 2 items" not in page


def test_batch_normalization_example_runs_and_matches_its_keras_code():
    blocks = fenced_blocks(BN_PAGE.read_text())
    run = json.loads(next(body for lang, body in blocks if lang == "json"))
    python = next(body for lang, body in blocks if lang == "python")
    result = nncards.run(run)
    assert result["status"] == "succeeded", result["error"]
    node = next(n for n in run["graph"]["nodes"] if n["card"] == "layer_BatchNormalization")
    assert result["layers"][node["id"]]["config"]["momentum"] == node["params"]["momentum"]
    step = run["steps"][0]
    namespace = {}
    exec(python, namespace)
    model = namespace["model"]
    inputs = {k: np.array(v, dtype="float32") for k, v in step["inputs"].items()}
    expected = model(inputs, training=step["training"])
    for output, value in result["steps"][0]["outputs"].items():
        np.testing.assert_allclose(value, np.asarray(expected[output]), atol=1e-5)
    layer = model.get_layer(node["id"])
    np.testing.assert_allclose(result["layers"][node["id"]]["weights"]["moving_mean"],
                               np.asarray(layer.moving_mean), atol=1e-6)


def test_card_image_draws_every_port_in_its_type_colour():
    card = registry().get("layer_BatchNormalization").as_json()
    svg = render(card)
    assert svg == render(card)
    for port in card["inputs"] + card["outputs"]:
        assert f">{port['text']}</text>" in svg
    color = TYPES["NeuralNetworkInitializer"].color
    gamma_row = svg.split(">Gamma initializer</text>")[1].split("</text>")[0]
    assert f'fill="{color}"' in gamma_row and ">ones" in gamma_row
    assert ">0.99</text>" in svg  # the momentum default
    assert svg.count("<circle") == sum(p["socket"] for p in card["inputs"] + card["outputs"])


class NoHelpParams(Params):
    size: int = param(3, text="Size")


class ThrowawayCard(LayerCard):
    id = "layer_Throwaway"
    title = "Throwaway"
    path = ("Tests",)
    help = "A card used only to show that missing help is refused."
    keras = "keras.layers.Identity"
    Params = NoHelpParams


def test_missing_help_fails_the_check(tmp_path, capsys):
    status = docs_main(tmp_path, check=True, cards=[*registry().cards.values(), ThrowawayCard])
    out = capsys.readouterr().out
    assert status == 1
    assert "error" in out and "layer_Throwaway: input 'size' has no help text" in out
    assert not any(tmp_path.iterdir())


def test_stale_missing_and_obsolete_files_fail_the_check(tmp_path, capsys):
    cards = [registry().get("input"), registry().get("output")]
    assert docs_main(tmp_path, check=True, cards=cards) == 1
    assert "missing: docs/cards/input.md" in capsys.readouterr().out
    assert docs_main(tmp_path, check=False, cards=cards) == 0
    assert docs_main(tmp_path, check=True, cards=cards) == 0
    (tmp_path / "docs/cards/input.md").write_text("edited by hand\n")
    (tmp_path / "assets/cards/layer_Gone.svg").write_text("<svg/>")
    capsys.readouterr()
    assert docs_main(tmp_path, check=True, cards=cards) == 1
    out = capsys.readouterr().out
    assert "stale: docs/cards/input.md" in out and "obsolete: assets/cards/layer_Gone.svg" in out
    docs_main(tmp_path, check=False, cards=cards)
    assert not (tmp_path / "assets/cards/layer_Gone.svg").exists()


def test_keras_code_wires_instance_cards_and_shorthands():
    cards = registry().cards
    graph = {"schema_version": 1, "nodes": [
        {"id": "g", "card": "initializer_Constant", "params": {"value": 2.0}},
        {"id": "x", "card": "input", "params": {"shape": [2]}},
        {"id": "bn", "card": "layer_BatchNormalization", "params": {"gamma_regularizer": "l2"}},
        {"id": "y", "card": "output", "params": {}}],
        "edges": [{"source": "x", "source_port": "output", "target": "bn", "target_port": "input"},
                  {"source": "g", "source_port": "initializer", "target": "bn", "target_port": "gamma_initializer"},
                  {"source": "bn", "source_port": "output", "target": "y", "target_port": "input"}]}
    code = keras_code(graph, cards)
    assert "g = keras.initializers.Constant(value=2.0)" in code
    assert ("bn = keras.layers.BatchNormalization(gamma_initializer=g, "
            "gamma_regularizer=keras.regularizers.L2(l2=0.01), name='bn')") in code


def test_example_card_pack_installs_and_joins_the_catalogue(tmp_path):
    source, target = tmp_path / "card_pack", tmp_path / "site-packages"
    shutil.copytree(ROOT / "examples/card_pack", source)  # pip builds in the source tree: keep the repo clean
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    probe = ("import json, sys, nncards; c = nncards.catalog(); "
             "card = next(x for x in c['cards'] if x['id'] == 'example_Rescaling'); "
             "print(json.dumps({'card': card, 'errors': c['load_errors'], 'tf': 'tensorflow' in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(target)})
    seen = json.loads(done.stdout)
    assert seen["errors"] == [] and seen["tf"] is False
    assert seen["card"]["path"] == ["Layers", "Preprocessing"] and seen["card"]["keras"] == "keras.layers.Rescaling"
    assert [p["id"] for p in seen["card"]["inputs"]] == ["input", "scale", "offset", "trainable", "name", "dtype"]


@dataclass
class RestExample:
    """A request of the REST guide: its shell command, the status and answer shown after it,
    and the shell variable (if any) that keeps the answer's run id for later examples."""

    command: str
    status: int
    answer_language: str
    answer: str
    keeps_run_id_as: str | None


def rest_examples(guide: str = "rest-api.md") -> list[RestExample]:
    """The requests of a guide: each `sh` block that starts with `# answers STATUS`."""
    blocks = fenced_blocks((DOCS / guide).read_text())
    examples = []
    for (lang, body), (answer_language, answer) in zip(blocks, blocks[1:]):
        if lang == "sh" and body.startswith("# answers"):
            header = re.match(r"# answers (\d+)(?:, its run_id is \$(\w+))?\n", body)
            assert header, body
            examples.append(RestExample(body.split("\n", 1)[1].strip(), int(header.group(1)), answer_language,
                                        answer, header.group(2)))
    return examples


ELIDED = "…"  # the guide's mark for items, keys or a value left out
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")


def decoded(array: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(array["base64"]), dtype=array["dtype"]).reshape(array["shape"])


def same_as_shown(shown, actual, where="answer"):
    """`actual` agrees with the guide's `shown` answer field by field: the same keys and items
    (but those elided), numbers within the guide's rounding, timestamps in the server's form,
    base64 arrays with the same values."""
    if shown == ELIDED:
        return
    if isinstance(shown, dict):
        assert isinstance(actual, dict), (where, actual)
        if ELIDED not in shown:
            assert actual.keys() == shown.keys(), (where, sorted(actual), sorted(shown))
        if {"dtype", "shape", "base64"} == shown.keys():
            assert actual["dtype"] == shown["dtype"] and actual["shape"] == shown["shape"], where
            np.testing.assert_allclose(decoded(actual), decoded(shown), atol=1e-3, err_msg=where)
            return
        for key, value in shown.items():
            if key != ELIDED:
                assert key in actual, (where, key)
                same_as_shown(value, actual[key], f"{where}.{key}")
    elif isinstance(shown, list):
        assert isinstance(actual, list), (where, actual)
        listed = shown[:-1] if shown and shown[-1] == ELIDED else shown
        assert len(actual) >= len(listed) if len(listed) < len(shown) else len(actual) == len(shown), (where, actual)
        for index, (value, item) in enumerate(zip(listed, actual)):
            same_as_shown(value, item, f"{where}[{index}]")
    elif isinstance(shown, float) or (isinstance(shown, int) and isinstance(actual, float) and
                                      not isinstance(shown, bool)):
        assert actual == pytest.approx(shown, abs=1e-3), (where, actual, shown)
    elif where.endswith("_at") and isinstance(shown, str):
        assert ISO_UTC.fullmatch(shown) and ISO_UTC.fullmatch(actual), (where, actual, shown)
    else:
        assert actual == shown, (where, actual, shown)


def server_sent_events(text: str) -> list[dict]:
    """Each event of a stream as {field: value}, its data parsed as JSON."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append({**fields, "data": json.loads(fields["data"])})
    return events


def answers_as_shown(server: LiveServer, examples: list[RestExample], env: dict[str, str]) -> None:
    """Each example's command, sent to `server`, answers the status and the answer shown."""
    for example in examples:
        command = example.command.replace("http://127.0.0.1:8000", server.url)
        done = subprocess.run(["bash", "-c", command + " -w '\\n%{http_code}'"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=90)
        body, _, code = done.stdout.rpartition("\n")
        assert int(code) == example.status, (command, done.stdout, done.stderr)
        if example.answer_language == "json":
            answer = json.loads(body)
            same_as_shown(json.loads(example.answer), answer, command.splitlines()[0])
            if example.keeps_run_id_as:
                env[example.keeps_run_id_as] = answer["run_id"]
        else:
            same_as_shown(server_sent_events(example.answer) if example.answer else [],
                          server_sent_events(body) if body else [], command)


def test_rest_guide_examples_answer_as_shown_by_a_live_server(live_server):
    answers_as_shown(live_server, rest_examples(), {**os.environ})


GUIDE_TOKEN = "a-token-for-the-security-guide"


def test_security_guide_examples_answer_as_shown_by_a_guarded_server(tmp_path):
    env = {**os.environ, "NNCARDS_TOKEN": GUIDE_TOKEN}
    # no warm-up: none of these requests builds a model, so TensorFlow need not load
    server = LiveServer(tmp_path / "data", "--allowed-hosts", "nncards.example.org", "--no-warm-up",
                        env=env).start()
    try:
        answers_as_shown(server, rest_examples("security.md"), env)
    finally:
        server.stop()
    blocks = fenced_blocks((DOCS / "security.md").read_text())
    command, refusal = next((body, blocks[index + 1][1]) for index, (lang, body) in enumerate(blocks)
                            if lang == "sh" and body.startswith("nncards serve --host"))
    done = subprocess.run([sys.executable, "-m", "nncards.cli", *command.split()[1:], "--data-dir",
                           str(tmp_path / "refused")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == refusal.strip()


def test_rest_guide_shows_every_route_of_the_api(live_server):
    """Each method and path of the OpenAPI description has an example in the guide."""
    requests = set()
    for example in rest_examples():
        for line in example.command.split("\ncurl")[-1:]:
            method = re.search(r"-X (\w+)", line)
            path = re.search(r"http://127\.0\.0\.1:8000(/[^\s'\"?]*)", line).group(1)
            requests.add(((method.group(1) if method else "GET").lower(), path))
    for path, methods in live_server.client.get(live_server.url + "/openapi.json").json()["paths"].items():
        pattern = re.compile(re.sub(r"\\{\w+\\}", r"[^/]+", re.escape(path)))
        for method in methods:
            assert any(m == method and pattern.fullmatch(p) for m, p in requests), (method, path)


def test_getting_started_python_runs_from_the_repository(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    python = [body for lang, body in fenced_blocks((DOCS / "getting-started.md").read_text()) if lang == "python"]
    assert python
    for block in python:
        exec(block, {})
    assert capsys.readouterr().out.startswith("succeeded\n")


def test_getting_started_graph_is_the_example_run_s_graph():
    shown = json.loads(next(body for lang, body in fenced_blocks((DOCS / "getting-started.md").read_text())
                            if lang == "json"))
    graph = json.loads((ROOT / "examples/batchnorm.json").read_text())["graph"]
    graph["nodes"] = [{key: value for key, value in node.items() if key != "position"} for node in graph["nodes"]]
    assert shown == graph


def test_models_guide_shows_what_export_and_import_give(tmp_path, monkeypatch):
    """The script `nncards export --to python` prints, the graph `nncards import` makes of the
    guide's model, and its refusal of the guide's Lambda model, are those the guide shows."""
    from nncards.contract.errors import NncardsError
    from nncards.interchange.export import to_python
    from nncards.interchange.keras_import import import_model

    blocks = fenced_blocks((DOCS / "models-in-and-out.md").read_text())
    script, make_small, make_lambda, make_legacy, load_migrated = [body for lang, body in blocks if lang == "python"]
    graph_shown, refusal_shown, legacy_shown = [json.loads(body) for lang, body in blocks if lang == "json"]
    assert to_python(json.loads((ROOT / "examples/batchnorm.json").read_text())["graph"]) == script
    monkeypatch.chdir(tmp_path)
    exec(make_small, {})
    exec(make_lambda, {})
    assert import_model((tmp_path / "small.keras").read_bytes()) == graph_shown
    with pytest.raises(NncardsError) as refusal:
        import_model((tmp_path / "lambda.keras").read_bytes())
    assert {"error": refusal.value.body()} == refusal_shown

    exec(make_legacy, {})
    commands = next(body for lang, body in blocks if lang == "sh" and body.startswith("nncards import legacy.h5"))
    for command in commands.splitlines():
        words = command.split(">")[0].split()
        assert cli.main(words[1:]) == 0, command
    assert json.loads((tmp_path / "legacy_run.json").read_text())["graph"] == legacy_shown
    loaded = {}
    exec(load_migrated, loaded)
    assert [layer.name for layer in loaded["model"].layers] == ["images", "ghost", "grid"]


def test_every_keras_equivalent_builds_the_shapes_of_its_graph():
    checked = 0
    for page in sorted((DOCS / "cards").glob("*_*.md")):
        blocks = fenced_blocks(page.read_text())
        python = [body for lang, body in blocks if lang == "python"]
        if not python:
            continue
        run = json.loads(next(body for lang, body in blocks if lang == "json"))
        shapes = nncards.validate(run["graph"])["shapes"]
        namespace = {}
        exec(python[0], namespace)
        step = run["steps"][0]
        inputs = {n["id"]: np.array(step["inputs"][n["id"]], dtype=n["params"].get("dtype", "float32"))
                  for n in run["graph"]["nodes"] if n["card"] == "input"}
        outputs = namespace["model"](inputs, training=True)
        for edge in run["graph"]["edges"]:
            if edge["target"] in outputs:
                expected = shapes[edge["source"]][edge["source_port"]]
                actual = list(np.shape(outputs[edge["target"]]))
                assert len(actual) == len(expected), page.name
                assert all(e in (None, a) for e, a in zip(expected, actual)), (page.name, expected, actual)
        checked += 1
    assert checked >= len(registry().cards) - 5
