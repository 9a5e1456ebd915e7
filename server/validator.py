"""Graph validation for the server: off the event loop, TensorFlow warmed early, results cached.

Keras keeps global state while it builds, so validations run one at a time on one thread. That
thread starts by importing TensorFlow and Keras (the warm-up), so the first request does not pay
for the import. Results are cached under a hash of the graph's content; node positions are left
out of the hash because they do not change the result.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from nncards.graph import Graph
from nncards.limits import Limits
from nncards.validation import validate

log = logging.getLogger("nncards.server")


def canonical_hash(graph: Graph) -> str:
    content = graph.model_dump(mode="json", exclude={"nodes": {"__all__": {"position"}}})
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def warm_up_keras() -> None:
    """Import TensorFlow and Keras and build a tiny graph once, so that later work starts warm."""
    import keras  # noqa: F401  (the import is the point: TensorFlow loads once, here)

    validate({"nodes": [{"id": "x", "card": "input", "params": {"shape": [1]}},
                        {"id": "y", "card": "output"}],
              "edges": [{"source": "x", "source_port": "output", "target": "y", "target_port": "input"}]})


class Validator:
    def __init__(self, limits: Limits, cache_size: int):
        self.limits = limits
        self.cache_size = cache_size
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="nncards-validation")

    def warm_up(self) -> None:
        """Start importing TensorFlow on the validation thread; returns at once."""
        self._thread.submit(warm_up_keras).add_done_callback(
            lambda done: done.exception() and log.error("TensorFlow warm-up failed: %s", done.exception()))

    async def validate(self, graph: Graph) -> dict:
        key = canonical_hash(graph)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        result = await asyncio.get_running_loop().run_in_executor(self._thread, validate, graph, self.limits)
        if self.cache_size:
            self._cache[key] = result
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return result

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
