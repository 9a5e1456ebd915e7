"""From a graph to a Keras model: structural analysis (no TensorFlow), symbolic shape inference
and the functional model keyed by node id."""
