"""Card packs through the `nncards.cards` entry points: a broken pack is reported, never fatal."""

import json
import os
import subprocess
import sys
import textwrap


def install_pack(site, name, module_source):
    """A real installed distribution: a module and a dist-info with an entry point, on a path."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[nncards.cards]\n{name} = {name}:cards\n")


def catalog_with(site):
    code = "import json, sys, nncards; print(json.dumps(nncards.catalog())); print('tensorflow' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    catalog, tf_loaded = done.stdout.strip().splitlines()
    return json.loads(catalog), tf_loaded == "True"


def test_broken_and_clashing_packs_are_reported_and_good_ones_load(tmp_path):
    install_pack(tmp_path, "brokenpack", "raise ImportError('a dependency is missing')\n")
    install_pack(tmp_path, "goodpack", """
        from nncards.card import InstanceCard, Port
        from nncards.cards.io import InputCard

        class Glow(InstanceCard):
            id = "initializer_Glow"
            title = "Glow initializer"
            path = ("Initializers", "Third party")
            help = "Starts every element at one."
            keras = "keras.initializers.Ones"
            outputs = (Port("initializer", "NeuralNetworkInitializer", "Initializer", "The initializer."),)

        def cards():
            return [Glow, InputCard]
    """)
    catalog, tf_loaded = catalog_with(tmp_path)
    ids = [card["id"] for card in catalog["cards"]]
    assert "initializer_Glow" in ids and ids.count("input") == 1
    errors = {e["pack"]: e["message"] for e in catalog["load_errors"]}
    assert errors["brokenpack"] == "ImportError: a dependency is missing"
    assert "input" in errors["goodpack"]
    assert not tf_loaded
