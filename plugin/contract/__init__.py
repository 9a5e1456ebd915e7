"""The formats of CONTRACT §§2-6 as Pydantic models: types and shorthands, graphs, limits, the
error envelope, runs and their results, arrays. No TensorFlow here and no behaviour beyond
building and checking these shapes; every other floor of nncards builds them through these models."""
