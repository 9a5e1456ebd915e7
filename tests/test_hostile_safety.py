"""No code execution: only registered cards and allow-listed identifiers, no unsafe deserialization, loopback by default."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import nncards
from nncards.contract.run import LOSSES, METRICS, OPTIMIZERS, Run
from nncards.server.settings import Settings

ROOT = Path(__file__).parent.parent
PACKAGE_SOURCES = sorted(p for folder in ("plugin", "cards", "server") for p in (ROOT / folder).rglob("*.py"))
# Ways to run code or revive objects from data; none belongs in a server that takes graphs from anyone.
FORBIDDEN = re.compile(r"\b(pickle|cPickle|marshal|shelve|dill|cloudpickle)\b|(?<![.\w])(eval|exec|compile|__import__)\("
                       r"|allow_pickle\s*=\s*True"
                       r"|safe_mode\s*=\s*False|enable_unsafe_deserialization|yaml\.load\(|\bload_model\(")


def test_package_sources_hold_no_code_execution_or_pickle():
    assert len(PACKAGE_SOURCES) > 30
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in PACKAGE_SOURCES
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if FORBIDDEN.search(line) and not line.lstrip().startswith("#")]
    assert found == []


def test_keras_objects_come_only_from_fixed_names():
    """Every Keras class is named by a card or a shorthand table, never by the request."""
    catalogue = nncards.catalog()
    keras_names = {card["keras"] for card in catalogue["cards"] if card["keras"]}
    assert keras_names and all(name.startswith(("keras.", "nncards.")) for name in keras_names)
    assert not keras_names & {"keras.layers.Lambda", "keras.layers.TFSMLayer", "keras.saving.load_model"}
    assert not any(card["id"].endswith("Lambda") for card in catalogue["cards"])
    # The only place a request's words pick a Keras object is the optimizer, by an allow-listed name,
    # deserialized by Keras in its default safe mode.
    calls = [line for path in PACKAGE_SOURCES for line in path.read_text().splitlines()
             if re.search(r"deserializ|\.get\(\{|from_config\(", line)]
    assert calls == ['    model.compile(optimizer=keras.optimizers.get({"class_name": optimizer["name"], "config": arguments}),']


def fit_step(**overrides):
    return {"graph": {"nodes": []}, "steps": [{"kind": "fit", "inputs": {}, "targets": {}, **overrides}]}


@pytest.mark.parametrize("overrides", [
    {"optimizer": {"name": "keras.optimizers.Adam"}},
    {"optimizer": {"name": "adam", "learning_rate": {"class_name": "__lambda__", "config": {"code": "x"}}}},
    {"optimizer": {"name": "adam", "beta_1": {"class_name": "Lambda", "config": {"function": "print"}}}},
    {"optimizer": {"name": "adam", "beta_1": "os.system"}},
    {"loss": "keras.losses.Loss"},
    {"loss": {"class_name": "Lambda"}},
    {"metrics": ["builtins.eval"]},
])
def test_requests_name_only_allow_listed_identifiers(overrides):
    with pytest.raises(ValidationError):
        Run.model_validate(fit_step(**overrides))


def test_allow_lists_hold_plain_names():
    for name in (*OPTIMIZERS, *LOSSES, *METRICS):
        assert re.fullmatch(r"[a-z0-9_]+", name), name


def test_server_binds_loopback_by_default(monkeypatch):
    monkeypatch.delenv("NNCARDS_HOST", raising=False)
    assert Settings.model_fields["host"].default == "127.0.0.1"
    assert Settings().host == "127.0.0.1"
    shown = subprocess.run([sys.executable, "-m", "nncards.cli", "serve", "--help"], capture_output=True,
                           text=True, check=True).stdout
    assert re.search(r"--host HOST.*?default:\s+127\.0\.0\.1", shown, re.S)
