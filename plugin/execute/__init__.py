"""Runs: one model built from a graph, the steps of a RUN on it, events for whoever watches, and
distributed runs in a process of their own."""
