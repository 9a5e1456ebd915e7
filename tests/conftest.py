import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))


# -- a real `nncards serve` process on loopback, for the server, editor and fuzzing tests ---------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """`nncards serve` in its own process, on a free loopback port, with its own data folder.

    `url` is the server's root (the API is under `url + "/api/v1"`); `client` an httpx client
    on it. Extra command-line flags (limits, workers, ...) are passed through.
    """

    def __init__(self, data_dir: Path, *flags: str, startup_timeout: float = 60.0, env: dict | None = None):
        self.data_dir, self.flags, self.env = Path(data_dir), flags, env or os.environ
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None

    def start(self) -> "LiveServer":
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = self.url + "/api/v1"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "server.log"
        env = {**self.env, "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nncards.cli", "serve", "--port", str(self.port),
                 "--data-dir", str(self.data_dir), *self.flags],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        self.client = httpx.Client(base_url=self.api, timeout=60)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nncards serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.client.get("/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nncards serve did not answer /api/v1/health in time:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> dict[int, bytes]:
        """The server's child processes (workers, resource tracker), with their command lines."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rpartition(")")[2].split()[1])
                if parent == self.process.pid:
                    found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue  # the process ended while being looked at
        return found

    def spawned_workers(self) -> set[int]:
        """Pids of the processes the server spawned to run and to validate (not its resource tracker)."""
        return {pid for pid, command in self.children().items() if b"spawn_main" in command}

    def stop(self, clean: bool = True) -> None:
        """A clean stop (SIGTERM, the server shuts down its workers) or an unclean one (SIGKILL)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM if clean else signal.SIGKILL)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> LiveServer:
    """One `nncards serve` shared by every test that does not change the server's settings."""
    server = LiveServer(tmp_path_factory.mktemp("live-server")).start()
    yield server
    server.stop()


# -- waiting for what a server does -----------------------------------------------------------------

def wait_until(condition, seconds: float = 90.0, what: str = "the condition"):
    """The first true value of `condition()`, asked every tenth of a second; fails the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def wait_for_epoch(api: httpx.Client, run_id: str) -> float:
    """Blocks until the run's events report its first finished epoch; when that was (`time.perf_counter`)."""
    with api.stream("GET", f"/runs/{run_id}/events") as stream:
        for line in stream.iter_lines():
            if line == "event: epoch":
                return time.perf_counter()
    raise AssertionError("the run ended before its first epoch")


# -- Debian's Chromium, driven by Playwright (never a browser Playwright downloads) ----------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium(*extra_args: str):
    """A headless Chromium for the block, closed (with Playwright's driver) when it ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()


# -- a real two-node Ray cluster, in a network namespace of its own (tests/ray_cluster.py) --------

@pytest.fixture(scope="session")
def ray_cluster():
    """One cluster for every Ray test; the tests using it run inside its loopback namespace."""
    from ray_cluster import LoopbackNamespace, RayTestCluster

    namespace = LoopbackNamespace()
    cluster = RayTestCluster(namespace)
    try:
        namespace.call(cluster.start)
        yield cluster
    finally:
        namespace.call(cluster.stop)
        namespace.close()  # fails when a process of the cluster is left


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test using the Ray cluster runs in the cluster's network namespace (only there it is reachable)."""
    if "ray_cluster" not in pyfuncitem.fixturenames:
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    pyfuncitem.funcargs["ray_cluster"].namespace.call(pyfuncitem.obj, **arguments)
    return True
