"""Reaching Keras lazily: nothing here imports TensorFlow until a Keras object is asked for."""

import importlib
import os
import sys
import tempfile

VERBOSE_VARIABLE = "NNCARDS_VERBOSE"


def keras_attribute(dotted: str):
    """`keras.layers.BatchNormalization` → the class, importing its module on first use."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and let it probe its devices without its start-up lines on stderr.

    TensorFlow's C++ side logs oneDNN notices, a CUDA driver probe and, on a machine without a
    GPU, an ERROR-level `cuInit` line, none of which a user can act on, and not all of which
    `TF_CPP_MIN_LOG_LEVEL` silences. They are kept (and shown after all if the import fails)
    unless `NNCARDS_VERBOSE` is set, which lets them through.
    """
    if "tensorflow" in sys.modules:
        return
    if os.environ.get(VERBOSE_VARIABLE):
        importlib.import_module("tensorflow")
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            importlib.import_module("tensorflow").config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
