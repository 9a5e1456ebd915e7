"""nncards' C++ sources compiled on the machine that first uses them, kept in the user's cache folder.

A library is built by the machine's C++ compiler (`$CXX`, else `g++`) once per machine: it is
kept in `$XDG_CACHE_HOME/nncards/ops` (else `~/.cache/nncards/ops`) under a name that changes
with everything that makes it (its source, the flags, what it is built against) and the CPU (the
code is compiled for the CPU that builds it). Processes sharing the cache folder wait for one
build (a lock file beside the library), the compiler works in a folder of its own beside the
library, its temporary files included, whose library is renamed into place once whole (a reader
never sees half a library; a build killed midway leaves only that folder, which the next build
sweeps), and the compiler never outlives the process that asked for it. The users (layers/batch_norm_op.py, contract/number_grid.py, contract/list_walk.py) load
the library their own way (`OnFirstUse`) and keep a slower path where it cannot be built.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BUILD_SECONDS = 600

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nncards" / "ops"


def compiler() -> str:
    return os.environ.get("CXX") or "g++"


@functools.cache
def _cpu_features() -> str:
    """The CPU's model and feature flags (Linux), else what Python knows of the processor."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            return "".join(dict.fromkeys(line for line in cpuinfo  # one line per core: each told once
                                         if line.startswith(("model name", "flags", "Features"))))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def cpu_has(feature: str) -> bool:
    """Whether the CPU lists `feature` (as /proc/cpuinfo spells it: `avx512_fp16`) among its flags."""
    return feature in _cpu_features().split()


def library_path(name: str, parts: Iterable[bytes]) -> Path:
    """Where library `name`, made of these parts (its source, flags, ...) for this CPU, lives."""
    key = hashlib.sha256()
    for part in (*parts, _cpu_features().encode()):
        key.update(hashlib.sha256(part).digest())
    return cache_dir() / f"{name}-{key.hexdigest()[:20]}.so"


# The compiler runs under this small Python process, which leads a process group of its own (the
# compiler's driver and the programs it starts): when the process that asked for the build dies,
# `kill -9` included, Linux sends it SIGTERM (its parent-death signal) and it kills the group, so
# that no compiler outlives a worker stopped while it builds.
_DIE_WITH_PARENT = """
import ctypes, os, signal, subprocess, sys
signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):  # the parent died before the signal was asked for
    os.killpg(0, signal.SIGKILL)
sys.exit(subprocess.call(sys.argv[2:]))
"""


def build(target: Path, command: Callable[[str], list[str]]) -> None:
    """Run `command(output)`, a compiler's command line writing the library to `output`, for
    `target` (in an existing folder). The compiler works in a folder of its own beside `target`,
    its temporary files too (`TMPDIR`: a compiler killed midway leaves them where it was told, not
    in the machine's /tmp); the library is renamed into place once whole, so a reader never sees
    half a library."""
    folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.stem}-"))
    arguments = command(str(folder / target.name))
    try:
        compiling = subprocess.Popen([sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *arguments],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     process_group=0, env={**os.environ, "TMPDIR": str(folder)})
        try:
            _, errors = compiling.communicate(timeout=BUILD_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(compiling.pid, signal.SIGKILL)
            compiling.wait()
            raise
        if compiling.returncode:
            raise subprocess.CalledProcessError(compiling.returncode, arguments, stderr=errors)
        os.replace(folder / target.name, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def built(target: Path, command: Callable[[str], list[str]]) -> Path:
    """`target`, built by `command` unless it exists; one build per machine however many processes
    ask at once (they wait on a lock file beside it). Raises OSError or SubprocessError when it
    cannot be built."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
            if not target.exists():  # not built by another process meanwhile
                for killed in target.parent.glob(f".{target.stem}-*"):  # no build of it runs: we hold its lock
                    shutil.rmtree(killed, ignore_errors=True)
                build(target, command)
    return target


class OnFirstUse:
    """One of nncards' libraries, built if need be and loaded once a process, on first use.

    `get()` gives what `load` made of the library's path, or None where it cannot be built or
    loaded (`OSError`, a compiler's failure or one of `failures`: a warning once a process, with the
    compiler's last words, so that an operator learns why a slower way serves, as on a CPU whose
    features TensorFlow's headers did not compile for); a call meanwhile, from another thread,
    waits for that one.
    `prepare_in_background()` starts that on a thread of its own (once a process), ahead of the
    first use; `ready()` gives the library when it is loaded, or built before (a load takes
    milliseconds), and None while it is built, so that a caller with a slower way of its own never
    waits for a compiler."""

    def __init__(self, name: str, path: Callable[[], Path], command: Callable[[str], list[str]],
                 load: Callable[[str], Any], failures: tuple[type[BaseException], ...] = ()):
        self.name, self.path, self.command, self.load = name, path, command, load
        self.failures = (OSError, subprocess.SubprocessError, *failures)
        self._loading, self._starting = threading.Lock(), threading.Lock()
        self._tried, self._library = False, None
        self._preparing: threading.Thread | None = None

    def get(self) -> Any:
        with self._loading:
            if not self._tried:
                try:
                    self._library = self.load(str(built(self.path(), self.command)))
                except self.failures as error:
                    details = getattr(error, "stderr", None) or b""
                    log.warning("nncards' %s could not be built or loaded here, a slower way serves: %s %s",
                                self.name, error, details.decode(errors="replace")[-2000:])
                self._tried = True
            return self._library

    def forget(self) -> None:
        """Build or load again at the next `get` (the cache folder or compiler changed: tests)."""
        with self._loading:
            self._tried, self._library = False, None

    def prepare_in_background(self) -> threading.Thread:
        with self._starting:
            if self._preparing is None:
                self._preparing = threading.Thread(target=self.get, name=f"nncards-{self.name}", daemon=True)
                self._preparing.start()
            return self._preparing

    def ready(self) -> Any:
        # A library in the cache is loaded here and now: a first use answered None while another
        # thread loaded it, and a process's first lists run went to the slower way (benchmarks/runs.py's
        # cold in-process lists run: 4.3-4.9 s, against 2.9 s for base64).
        if self._tried or self.path().exists():
            return self.get()
        return None if self.prepare_in_background().is_alive() else self.get()
