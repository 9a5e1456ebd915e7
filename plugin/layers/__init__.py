"""nncards' own Keras layers. Each module imports Keras, so only building a model imports them."""
