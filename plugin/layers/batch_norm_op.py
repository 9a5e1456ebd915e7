"""nncards' batch normalization training op (`batch_norm_op.cc`), built on first use and loaded
with `tf.load_op_library`.

The C++ source ships with the package and is compiled by the machine's C++ compiler (`$CXX`, else
`g++`) against the headers of the TensorFlow that runs it, once per machine: the library is
kept in the user's cache folder (`$XDG_CACHE_HOME/nncards/ops`, else `~/.cache/nncards/ops`)
under a name that changes with the source, TensorFlow's build, the compiler flags and the CPU
(the code is compiled for the CPU that builds it). Only this source is ever compiled. Where
there is no compiler, or the build or the load fails, `ops()` is None and batch normalization
keeps TensorFlow's kernels: correctness never depends on this op.

The first build on a machine takes some 10 s: a server's run workers start it as they start
(`prepare_in_background`), so that a first run seldom waits for it. Threads of one process wait
for one build (a lock), and so do processes sharing the cache folder (a lock file beside the
library), so a machine compiles the source once however many workers start together.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import tensorflow as tf

SOURCE = Path(__file__).with_name("batch_norm_op.cc")
# -march=native: the library runs where it was built (the CPU's features are in its name);
# -ffp-contract=off: no fused multiply-adds, so every product and sum rounds as TensorFlow's ops do.
FLAGS = ("-shared", "-fPIC", "-O3", "-march=native", "-ffp-contract=off", "-w")
BUILD_SECONDS = 600

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nncards" / "ops"


def _cpu_features() -> str:
    """The CPU's model and feature flags (Linux), else what Python knows of the processor."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            return "".join(dict.fromkeys(line for line in cpuinfo  # one line per core: each told once
                                         if line.startswith(("model name", "flags", "Features"))))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def library_path() -> Path:
    """Where this source's library, built for this TensorFlow, these flags and this CPU, lives."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.version.VERSION.encode(), tf.version.GIT_VERSION.encode(),
                 " ".join((*tf.sysconfig.get_compile_flags(), *FLAGS, *tf.sysconfig.get_link_flags())).encode(),
                 _cpu_features().encode()):
        key.update(hashlib.sha256(part).digest())
    return cache_dir() / f"batch_norm_op-{key.hexdigest()[:20]}.so"


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


def build(target: Path, compiler: str) -> None:
    """Compile the source into `target` (an existing folder): the compiler writes a file of its
    own, renamed into place once whole, so a reader never sees half a library."""
    descriptor, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".so")
    os.close(descriptor)
    command = [compiler, *tf.sysconfig.get_compile_flags(), *FLAGS, str(SOURCE), "-o", partial,
               *tf.sysconfig.get_link_flags()]
    try:
        compiling = subprocess.Popen([sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *command],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     process_group=0)
        try:
            _, errors = compiling.communicate(timeout=BUILD_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(compiling.pid, signal.SIGKILL)
            compiling.wait()
            raise
        if compiling.returncode:
            raise subprocess.CalledProcessError(compiling.returncode, command, stderr=errors)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


_loading = threading.Lock()


def ops():
    """The loaded op module (`nncards_batch_norm_training`, its gradient registered), or None
    when it cannot be built or loaded here (logged once, at debug level). The first call builds
    or loads it; a call meanwhile, from another thread, waits for that one."""
    with _loading:
        return _load()


def prepare_in_background() -> threading.Thread:
    """Build or load the op on a thread of its own, ahead of the first layer that needs it."""
    thread = threading.Thread(target=ops, name="nncards-batch-norm-op", daemon=True)
    thread.start()
    return thread


@functools.cache
def _load():
    target = library_path()
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target.with_suffix(".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
                if not target.exists():  # not built by another process meanwhile
                    build(target, os.environ.get("CXX") or "g++")
        return tf.load_op_library(str(target))
    except (OSError, subprocess.SubprocessError, tf.errors.OpError) as error:
        details = getattr(error, "stderr", None) or b""
        log.debug("nncards' batch normalization op is unavailable, TensorFlow's kernels serve: %s %s",
                  error, details.decode(errors="replace")[-2000:])
        return None


@tf.RegisterGradient("NncardsBatchNormTraining")
def _batch_norm_gradient(op, dy, dmean, dvariance):  # the statistics only feed the moving averages
    x, gamma, _, *moving = op.inputs
    _, mean, variance = op.outputs
    gradients = ops().nncards_batch_norm_training_grad(dy, x, gamma, mean, variance, epsilon=op.get_attr("epsilon"))
    return [*gradients, *(None for _ in moving)]
