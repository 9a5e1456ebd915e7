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
library), so a machine compiles the source once however many workers start together (the build's
machinery, shared with nncards' other C++ source, is `nncards.native`).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from nncards import native

SOURCE = Path(__file__).with_name("batch_norm_op.cc")
# -march=native: the library runs where it was built (the CPU's features are in its name);
# -mprefer-vector-width=512: where the CPU has AVX-512, the compiler's own vector loops use all of it
# (g++ 12 keeps to 256 bits): an NHWC mixed_float16 step 4.1-4.2 ms instead of 5.0-5.3 on an
# AVX-512 Xeon, float32 5.9 instead of 6.1-6.3, the same bits;
# -ffp-contract=off: no fused multiply-adds, so every product and sum rounds as TensorFlow's ops do;
# -fno-math-errno: std::sqrt need not set errno, so that loops taking it (each channel's
# 1 / sqrt(variance + epsilon)) are vectorized: with the restrict-qualified per-channel loops, a
# (2, 16384) float32 forward 40 us instead of 72 of mostly scalar square roots and divisions; the
# same bits (IEEE square root and division either way);
# -mno-avx512fp16 where the CPU has AVX512-FP16: -march=native turns it on, and then the Eigen
# headers TensorFlow 2.21 ships fail to compile (g++ 12, PacketMathFP16.h); the op converts halves
# with F16C and AVX512F instructions, which stay on.
FLAGS = ("-shared", "-fPIC", "-O3", "-march=native", "-mprefer-vector-width=512", "-ffp-contract=off",
         "-fno-math-errno", "-w",
         *(("-mno-avx512fp16",) if native.cpu_has("avx512_fp16") else ()))


def library_path() -> Path:
    """Where this source's library, built for this TensorFlow, these flags and this CPU, lives."""
    return native.library_path("batch_norm_op", (
        SOURCE.read_bytes(), tf.version.VERSION.encode(), tf.version.GIT_VERSION.encode(),
        " ".join((*tf.sysconfig.get_compile_flags(), *FLAGS, *tf.sysconfig.get_link_flags())).encode()))


def _command(output: str) -> list[str]:
    return [native.compiler(), *tf.sysconfig.get_compile_flags(), *FLAGS, str(SOURCE), "-o", output,
            *tf.sysconfig.get_link_flags()]


# `ops()`: the loaded op module (`nncards_batch_norm_training`, its gradient registered), or None
# where it cannot be built or loaded here; `prepare_in_background()` builds or loads it on a thread
# of its own, ahead of the first layer that needs it.
OP = native.OnFirstUse("batch-norm-op", library_path, _command, tf.load_op_library, failures=(tf.errors.OpError,))
ops, prepare_in_background = OP.get, OP.prepare_in_background


@tf.RegisterGradient("NncardsBatchNormTraining")
def _batch_norm_gradient(op, dy, dmean, dvariance):  # the statistics only feed the moving averages
    x, gamma, _, *moving = op.inputs
    _, mean, variance = op.outputs
    gradients = ops().nncards_batch_norm_training_grad(dy, x, gamma, mean, variance, epsilon=op.get_attr("epsilon"),
                                                       axis=op.get_attr("axis"))
    return [*gradients, *(None for _ in moving)]
