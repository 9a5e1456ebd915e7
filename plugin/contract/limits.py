"""Size and time limits (CONTRACT §4); every one has its own error code when passed."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_nodes: int = 2_000
    max_edges: int = 10_000
    max_array_elements: int = 16 * 2**20
    max_body_bytes: int = 64 * 2**20
    max_run_seconds: float = 600.0
    max_tensor_elements: int = 256 * 2**20


DEFAULT_LIMITS = Limits()
