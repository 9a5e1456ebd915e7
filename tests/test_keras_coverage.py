"""Every public layer of `keras.layers` has a card, or is excluded with its reason.

The public layer classes are read from Keras itself, so a Keras upgrade that adds a layer fails
here until the layer gets a card or a written reason in `nncards.cards.exclusions`."""

import inspect

import keras

from nncards.cards.exclusions import EXCLUDED, UNCARDED_ARGUMENTS
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


# Keras 2's batch normalization options, served by nncards' own subclass of the Keras layer.
NNCARDS_OPTIONS = {"layer_BatchNormalization": {"fused", "virtual_batch_size", "adjustment", "trainable_semantics"}}


def constructor_keywords(layer: type) -> tuple[set[str], set[str]]:
    """(the arguments of the class's own constructor, every keyword its constructors accept)."""
    accepted = set()
    for klass in layer.__mro__:
        if "__init__" in klass.__dict__:
            accepted |= set(inspect.signature(klass.__init__).parameters)
    own = set(inspect.signature(layer.__init__).parameters) - {"self", "kwargs"}
    return own, accepted


def test_card_params_are_the_keras_constructor_arguments():
    """Import and export map a layer's config to a card's params by name: every param is a
    constructor argument (or a call option), and every argument is a param, a layer socket or
    written down as uncarded with its reason."""
    for layer, (card_id,) in carded().items():
        card = registry().get(card_id)
        own, accepted = constructor_keywords(layer)
        params = set(card.Params.model_fields) - set(card.call_options) - NNCARDS_OPTIONS.get(card_id, set())
        assert params <= accepted, f"{card_id}: {sorted(params - accepted)} are not arguments of {layer.__name__}"
        assert not set(card.call_options) & own, card_id
        sockets = {p.id for p in card.sockets if p.type == "NeuralNetworkLayer"}
        uncarded = {a for a in own - params - sockets
                    if a not in UNCARDED_ARGUMENTS and f"{layer.__name__}.{a}" not in UNCARDED_ARGUMENTS}
        assert not uncarded, f"{card_id}: the arguments {sorted(uncarded)} have neither a param nor a reason"
