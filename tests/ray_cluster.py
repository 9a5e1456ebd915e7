"""A real two-node Ray cluster for the tests, inside a network namespace of its own.

Ray binds and advertises the machine's outward address even when told `--node-ip-address
127.0.0.1` (it turns loopback into "a remotely reachable address" for multi-node clusters). In a
fresh network namespace the loopback interface is the only one there is, so every process of
the cluster, the server that drives it and the test's requests stay on it. Linux gives each
thread its own namespace: the namespace is made by the threads of a small pool (`call`), and
processes started from them are born in it, while the rest of the test session is untouched.

The cluster's processes run with their own HOME and temporary folder (no Ray token or state of
the user's is read) and without usage reporting. Teardown stops every process in the namespace
by its id — never `ray stop`, which would stop every Ray process of the machine by name — and
fails when one is left.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sH22x"  # struct ifreq: the interface name, then the flags
NODE_SETTINGS = ["--num-cpus", "1", "--memory", str(1_500_000_000), "--object-store-memory", str(100_000_000)]
START_TIMEOUT = 120.0
# Ask for SIGKILL when the test process exits, then become the command (the request survives exec).
DIE_WITH_TESTS = ("import os, sys; from nncards.execute.lifeline import die_with_parent; "
                  "die_with_parent(int(sys.argv[1])); os.execv(sys.argv[2], sys.argv[2:])")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)} (needs root: CAP_SYS_ADMIN)")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        flags = struct.unpack(IFREQ, fcntl.ioctl(probe, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0)))[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


class LoopbackNamespace:
    """A network namespace holding only a loopback interface; `call` runs code inside it."""

    def __init__(self, threads: int = 4):
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="loopback-ns", initializer=self._enter)
        self.inode = self.call(lambda: os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino)

    def _enter(self) -> None:
        with self._lock:
            if self._fd is None:
                _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
                _loopback_up()
                self._fd = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
            else:
                _check(_libc.setns(self._fd, CLONE_NEWNET), "setns")

    def call(self, function, *args, **kwargs):
        return self.submit(function, *args, **kwargs).result()

    def submit(self, function, *args, **kwargs):
        """Run `function` in the namespace without waiting: its future."""
        return self._pool.submit(function, *args, **kwargs)

    def processes(self) -> list[int]:
        """Every process living in the namespace."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    if os.stat(f"/proc/{entry}/ns/net").st_ino == self.inode:
                        found.append(int(entry))
                except OSError:
                    pass  # gone meanwhile
        return found

    def close(self) -> None:
        """Kill what is left in the namespace; raise if anything survives."""
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._pool.shutdown()
        if self._fd is not None:
            os.close(self._fd)
        left = self.processes()
        if left:
            raise RuntimeError(f"processes left in the test's network namespace: {left}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RayTestCluster:
    """A head node and a worker node (1 CPU each), started with `ray start` in the namespace."""

    def __init__(self, namespace: LoopbackNamespace):
        self.namespace = namespace
        # Ray's socket paths must stay short: a folder directly under /tmp.
        self.root = Path(tempfile.mkdtemp(prefix="nncards-ray-", dir="/tmp"))
        (self.root / "home").mkdir()
        self.env = {**os.environ, "HOME": str(self.root / "home"), "RAY_USAGE_STATS_ENABLED": "0",
                    "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[subprocess.Popen] = []

    def _ray_start(self, name: str, *arguments: str) -> None:
        """`ray start --block`, made to die with the test process (a killed pytest leaves no node behind:
        the node's own processes share the fate of their `ray start --block`)."""
        ray = str(Path(sys.executable).with_name("ray"))
        command = [ray, "start", "--block", "--disable-usage-stats", *NODE_SETTINGS, *arguments]
        with open(self.root / f"{name}.log", "ab") as log:
            self.nodes.append(subprocess.Popen(
                [sys.executable, "-c", DIE_WITH_TESTS, str(os.getpid()), *command],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True))

    def start(self) -> RayTestCluster:
        """Start both nodes and wait until the cluster lists them alive (runs in the namespace)."""
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self._ray_start("head", "--head", "--port", str(self.port), "--temp-dir", str(self.root / "ray"),
                        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port))
        self._wait(self._head_listens, "the head node")
        self._ray_start("worker", "--address", self.address)
        self._wait(lambda: len(self.alive_nodes()) == 2, "the worker node")
        return self

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.poll() is not None:
                    raise RuntimeError(f"ray start exited with {node.returncode}:\n{self.logs()}")
            try:
                if ready():
                    return
            except Exception:
                pass  # the dashboard is not answering yet
            time.sleep(0.5)
        raise RuntimeError(f"{what} did not come up in time:\n{self.logs()}")

    def _head_listens(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in sorted(self.root.glob("*.log")))

    # -- the cluster's own view, through Ray's state API ------------------------------------

    def alive_nodes(self) -> list:
        from ray.util.state import list_nodes

        return list_nodes(address=self.dashboard, filters=[("state", "=", "ALIVE")])

    def tasks(self, name: str) -> list:
        from ray.util.state import list_tasks

        return list_tasks(address=self.dashboard, filters=[("name", "=", name)], detail=True)

    def stop(self) -> None:
        """Stop the nodes: their `ray start --block` parents, then (namespace's `close`) the rest."""
        for node in self.nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
            node.wait()
        shutil.rmtree(self.root, ignore_errors=True)
