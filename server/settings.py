"""Server settings: embedded defaults, `NNCARDS_*` environment variables, `nncards serve` flags.

Every field becomes a command-line flag (`max_run_seconds` → `--max-run-seconds`) and an
environment variable (`NNCARDS_MAX_RUN_SECONDS`); a flag wins over the variable, the variable
over the default. The field descriptions are the `--help` texts.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

from nncards.contract.limits import DEFAULT_LIMITS, Limits


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "nncards"


def _default_workers() -> int:
    return max(1, (os.cpu_count() or 1) // 2)


class ExecutorKind(StrEnum):
    LOCAL = "local"
    RAY = "ray"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NNCARDS_", extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to listen on; the default answers this machine only.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on (0 picks a free one).")
    data_dir: Path = Field(default_factory=_default_data_dir,
                           description="Folder of the run database (runs.sqlite3); created when missing.")
    workers: int = Field(default_factory=_default_workers, ge=1,
                         description="Worker processes that execute runs side by side; further runs wait "
                         "in a queue. Default: half the CPU cores, at least one.")
    executor: ExecutorKind = Field(ExecutorKind.LOCAL, description="Where runs execute: `local`, worker "
                                   "processes on this machine; `ray`, tasks on a Ray cluster (see --ray-address; "
                                   "needs `pip install 'nncards[ray]'`).")
    ray_address: str | None = Field(None, description="With --executor ray: the cluster's address, HOST:PORT of "
                                    "its head node, or `auto` (the cluster started on this machine, or "
                                    "RAY_ADDRESS). Default: auto.")
    ray_max_runs: int = Field(16, ge=1, description="With --executor ray: runs handed to the cluster at once; "
                              "Ray's scheduler starts each when a node has its resources, further runs wait "
                              "in the server's queue.")
    threads_per_worker: int | None = Field(None, ge=1, description="TensorFlow threads per worker process. "
                                           "Default: the CPU cores shared evenly between the workers.")
    run_niceness: int = Field(10, ge=0, le=19, description="Scheduling niceness of the processes that execute runs "
                              "(0 to 19): the higher, the sooner training yields the CPU to the server's "
                              "requests and validations; idle cores still go to training.")
    max_nodes: int = Field(DEFAULT_LIMITS.max_nodes, ge=1, description="Most nodes a graph may hold.")
    max_edges: int = Field(DEFAULT_LIMITS.max_edges, ge=0, description="Most edges a graph may hold.")
    max_array_elements: int = Field(DEFAULT_LIMITS.max_array_elements, ge=1,
                                    description="Most array elements (inputs, targets, weights) in one run request.")
    max_body_bytes: int = Field(DEFAULT_LIMITS.max_body_bytes, ge=1, description="Largest request body, in bytes.")
    max_run_seconds: float = Field(DEFAULT_LIMITS.max_run_seconds, gt=0,
                                   description="Time a run may take once started; past it the worker is "
                                   "stopped and the run fails with run_timeout.")
    max_tensor_elements: int = Field(DEFAULT_LIMITS.max_tensor_elements, ge=1,
                                     description="Most elements of any one tensor of a built model, per sample.")
    max_wait_seconds: float = Field(60.0, ge=0, description="Longest a `POST /runs?wait=…` request is held open.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins (e.g. https://editor.example.org, or *) allowed to call the "
        "API from a browser; none by default. The variable takes a comma-separated list.")
    warm_up: bool = Field(False, description="Start the TensorFlow workers (validation and runs) right after "
                          "start-up, so that the first validation and the first run do not wait for TensorFlow's "
                          "import; otherwise each starts when first needed. Either way they stop once idle "
                          "(--worker-idle-seconds).")
    worker_idle_seconds: float = Field(300.0, ge=0, description="Seconds a TensorFlow worker (validation or "
                                       "runs) may stay idle before it stops and gives its memory (some 600 MiB "
                                       "each) back; the next validation or run starts it again, paying "
                                       "TensorFlow's import. 0: never stop.")
    validation_workers: int = Field(1, ge=1, description="Processes that validate graphs, apart from the "
                                    "server's own so that a validation never stalls other requests; each one "
                                    "holds a copy of TensorFlow.")
    validation_cache_size: int = Field(256, ge=0, description="Validation results kept, keyed by graph content.")
    token: str | None = Field(None, json_schema_extra={"shown_default": "none"}, description="Bearer token every API route but GET /api/v1/health asks "
                              "for (`Authorization: Bearer TOKEN`); `auto` makes one and prints the editor's URL "
                              "with it. Without a token the API is open to whoever reaches the port.")
    allow_unauthenticated: bool = Field(False, description="Start without a token on an address other than "
                                        "loopback, on purpose: anyone who reaches the port can run graphs.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host names (as in the Host header) answered besides the loopback "
        "names (localhost, 127.0.0.1, ::1), e.g. the machine's name when --host is not loopback; other Host "
        "headers get 403, which keeps a web page from reaching the server through a rebound DNS name. The "
        "variable takes a comma-separated list.")
    max_queued_runs: int = Field(100, ge=1, description="Most runs waiting for a worker; further submissions "
                                 "get 429 queue_full with Retry-After.")
    max_json_depth: int = Field(64, ge=2, description="Deepest nesting of arrays and objects in a request body; "
                                "deeper gets 422 request_invalid.")
    max_result_elements: int = Field(DEFAULT_LIMITS.max_array_elements, ge=1, description="Most array elements "
                                     "in one RUN RESULT (outputs and weights): checked from the inferred shapes "
                                     "before a run starts (413 too_large), and on the result itself "
                                     "(the run fails with result_too_large).")
    keep_runs: int = Field(1000, ge=1, description="Most finished runs kept; past it the oldest finished runs "
                           "are removed, with their arrays.")
    keep_bytes: int = Field(2 * 2**30, ge=0, description="Most bytes of stored results (their array files and "
                            "records); past it the oldest finished runs are removed. The newest finished run "
                            "is always kept.")
    validation_memo_bytes: int = Field(64 * 2**20, ge=0, description="Memory, in bytes, a validation worker "
                                       "(or a run worker validating a run's graph) may spend remembering node builds for the "
                                       "next validation.")
    idle_connection_seconds: float = Field(5.0, gt=0, description="An open connection that sends no request "
                                           "for this long, or takes longer to send a request's head, is closed.")
    max_connections: int = Field(1000, ge=1, description="Most connections and requests at once; past it "
                                 "requests get 503.")

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_origins(cls, value):
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    def refusal(self) -> str | None:
        """Why the server must not start with these settings (a sentence), or None."""
        if self.token is None and not is_loopback(self.host) and not self.allow_unauthenticated:
            return (f"Refusing to listen on {self.host} without a token: anyone who reaches the port could run "
                    "graphs. Give --token (or --token auto), or --allow-unauthenticated to do it on purpose.")
        if self.token is not None and "*" in self.cors_origins:
            return ("Refusing --cors-origins '*' with a token: any web page could then use a token it has "
                    "come by. Name the editor's origins instead.")
        return None

    @property
    def limits(self) -> Limits:
        return Limits(max_nodes=self.max_nodes, max_edges=self.max_edges,
                      max_array_elements=self.max_array_elements, max_body_bytes=self.max_body_bytes,
                      max_run_seconds=self.max_run_seconds, max_tensor_elements=self.max_tensor_elements)

    @property
    def worker_threads(self) -> int:
        return self.threads_per_worker or max(1, (os.cpu_count() or 1) // self.workers)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; flags left out fall back to the environment, then to the default."""
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.get_default(call_default_factory=True)
        shown = (field.json_schema_extra or {}).get("shown_default") or _shown(default)
        help_text = f"{field.description} [env NNCARDS_{name.upper()}; default: {shown}]"
        help_text = help_text.replace("%", "%%")
        if field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        elif name in ("cors_origins", "allowed_hosts"):
            parser.add_argument(flag, nargs="+", metavar=name.split("_")[-1].upper().rstrip("S"),
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, default=argparse.SUPPRESS, metavar=name.upper(), help=help_text)


def _shown(value) -> str:
    if isinstance(value, list):
        return ", ".join(value) or "none"
    return "automatic" if value is None else str(value)


def from_arguments(args: argparse.Namespace) -> Settings:
    given = {name: getattr(args, name) for name in Settings.model_fields if hasattr(args, name)}
    return Settings(**given)
