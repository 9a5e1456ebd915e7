"""Reaching Keras lazily: nothing here imports TensorFlow until a Keras object is asked for."""

import importlib


def keras_attribute(dotted: str):
    """`keras.layers.BatchNormalization` → the class, importing its module on first use."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)
