"""`model.fit` under TensorFlow's `MultiWorkerMirroredStrategy` with Keras 3.

Keras 3.15's TensorFlow trainer fails there in two places, both in code that only gathers
values across replicas (the training itself is sound):
- before the first step, `_maybe_symbolic_build` averages the first distributed batch over the
  replicas, only to learn its shapes; with one replica per worker the batch is a `PerReplica`
  value held eagerly, and the collective reduce refuses it ("Attempt to convert a value
  (PerReplica ...) to a Tensor"). Any one replica's batch has the shapes it needs.
- after every step, `reduce_per_replica` averages the logs with `axis=0`, which fails on the
  scalar logs ("Invalid reduction dimension 0 for input with 0 dimensions"); worse, each worker
  holds only its own replica's loss, so the logs must be averaged over the workers.

`enable_multi_worker_fit()` replaces those two functions, in the process of a worker of a
multi-worker run only, with ones that gather correctly: `fit` then keeps all its semantics
(history, metrics, callbacks, the steps and the epochs), and a synchronized batch normalization
computes the statistics of the whole global batch.
"""

from __future__ import annotations

import functools


@functools.cache
def enable_multi_worker_fit() -> None:
    """Make `fit`, `evaluate` and `predict` work under MultiWorkerMirroredStrategy (this process)."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    original_reduce = trainer.reduce_per_replica

    def build_from_one_replica(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(_one_replica(self.distribute_strategy), next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(functools.partial(_mean_over_workers, strategy), values)
        return original_reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_one_replica
    trainer.reduce_per_replica = reduce_per_replica


def _one_replica(strategy):
    import tensorflow as tf

    def value(v):
        return strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v
    return value


def _mean_over_workers(strategy, value):
    """The mean of a log over every replica of every worker (each holds its own replica's)."""
    import tensorflow as tf

    return strategy.run(lambda v: tf.distribute.get_replica_context().all_reduce("MEAN", v), args=(value,))
