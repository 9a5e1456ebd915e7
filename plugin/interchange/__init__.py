"""Models in and out: Keras models imported as graphs (`keras_import`), graphs exported as Keras
code or `.keras` files (`export`). Both go through the card declarations."""
