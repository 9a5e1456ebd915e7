"""Every public layer of `keras.layers` has a card, or is excluded with its reason.

The public layer classes are read from Keras itself, so a Keras upgrade that adds a layer fails
here until the layer gets a card or a written reason in `nncards.cards.exclusions`."""

import inspect

import keras

from nncards.cards.exclusions import EXCLUDED
from nncards.keras_objects import keras_attribute
from nncards.registry import registry


def public_layers() -> dict[type, list[str]]:
    """Each public Layer subclass of `keras.layers` with its public names (aliases included)."""
    layers: dict[type, list[str]] = {}
    for name in sorted(dir(keras.layers)):
        value = getattr(keras.layers, name)
        if not name.startswith("_") and inspect.isclass(value) and issubclass(value, keras.layers.Layer):
            layers.setdefault(value, []).append(name)
    return layers


def carded() -> dict[type, list[str]]:
    """The Keras layer classes the catalogue builds, with the ids of their cards."""
    cards: dict[type, list[str]] = {}
    for card in registry().cards.values():
        if card.keras and card.keras.startswith("keras.layers."):
            cards.setdefault(keras_attribute(card.keras), []).append(card.id)
    return cards


def test_every_public_keras_layer_is_carded_or_excluded_with_a_reason():
    cards = carded()
    missing = [names for layer, names in public_layers().items()
               if layer not in cards and not any(name in EXCLUDED for name in names)]
    assert not missing, f"keras.layers classes with neither a card nor a reason in nncards.cards.exclusions: {missing}"


def test_exclusions_name_public_layers_without_cards_and_give_reasons():
    layers = {name: layer for layer, names in public_layers().items() for name in names}
    cards = carded()
    for name, reason in EXCLUDED.items():
        assert name in layers, f"{name} is not a public keras.layers class"
        assert layers[name] not in cards, f"{name} is excluded but has the card(s) {cards[layers[name]]}"
        assert len(reason.split()) >= 8, f"{name}: the reason is too short to explain anything"


def test_each_carded_layer_has_one_card_named_after_its_class():
    layers = public_layers()
    for layer, card_ids in carded().items():
        assert layer in layers, f"{card_ids} build {layer.__name__}, which is not public in keras.layers"
        assert len(card_ids) == 1, f"{layer.__name__} has several cards: {card_ids}"
        assert card_ids[0].split("_", 1)[1] in layers[layer], card_ids


def test_most_keras_layers_have_cards():
    layers, cards = public_layers(), carded()
    assert len(cards) >= 120 and len(cards) + len(EXCLUDED) == len(layers)
