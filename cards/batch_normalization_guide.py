"""The long explanation on the batch normalization card's documentation page: its formulas in
training and at inference, and how Keras 3, Keras 2 and Keras 2's V1 layer differ."""

GUIDE = r"""
## What it computes

For each feature (each index along `axis`) the layer reduces over every other axis: the batch,
and for images or sequences the positions too. Below, `N` is the number of values reduced per
feature, `x` one of them, and `γ`, `β`, `ε` stand for gamma, beta and epsilon (`γ` is 1 without
`scale`, `β` is 0 without `center`).

### In training

A `fit`, or a `call` step with `"training": true`, while `trainable` is on:

```text
mean_B = (1/N) · Σ x
var_B  = (1/N) · Σ (x − mean_B)²
y      = γ · (x − mean_B) / √(var_B + ε) + β

moving_mean     ← momentum · moving_mean     + (1 − momentum) · mean_B
moving_variance ← momentum · moving_variance + (1 − momentum) · var_B
```

The batch variance is the biased one, divided by `N` rather than `N − 1`. The output is
computed from the batch statistics before the moving ones are updated, so a training step never
sees its own update. `momentum` is the share kept of the old value:
PyTorch's `momentum` is `1 − momentum` here.

### At inference

`predict`, `evaluate`, a `call` step without training, or any step once `trainable` is off:

```text
y = γ · (x − moving_mean) / √(moving_variance + ε) + β
```

Nothing is updated, and a sample's output does not depend on the other samples of its batch.
Two consequences: a batch of one sample (or a feature that is constant over the batch) has
`var_B = 0` in training, so its output is `β`; and freezing the layer for fine-tuning is done by
turning `trainable` off, which switches it to these formulas.

### Options that change the training formulas

- **Mask**: only the positions where the mask is true count in `mean_B` and `var_B` (divided
  by their count plus 10⁻⁷); masked positions are still normalized, not zeroed. Inference
  ignores the mask.
- **Batch renormalization** (`renorm`): with `s_B = √(var_B + ε)` and the moving renorm
  statistics `m_r`, `s_r` (the latter at least `√ε`), the corrections
  `r = clip(s_B / s_r, rmin, rmax)` and `d = clip((mean_B − m_r) / s_r, −dmax, dmax)` give
  `y = γ · ((x − mean_B) / s_B · r + d) + β`. Gradients treat `r` and `d` as constants; `m_r`
  and `s_r` move with `renorm_momentum`. The moving variance is then derived from a moving
  standard deviation `s`, as `max(s² − ε, 0)`.
- **Ghost batches** (`virtual_batch_size = V`): a batch of `B` samples is cut into
  `G = B / V` groups, group `j` holding samples `j, j + G, j + 2G, …`, and each group is
  normalized with its own statistics. The moving mean follows the mean of the group means
  (the batch mean); the moving variance follows the mean of the group variances, which is
  smaller than the batch variance when the groups differ.
- **Adjustment**: per feature and training step, a factor `a` drawn from `scale` and an offset
  `b` drawn from `bias` give `y = γ · (a · x̂ + b) + β`, where `x̂` is the normalized value.
- **Synchronized**: `var_B = max(E[x²] − E[x]², 0)` in one pass, over all replicas. On data
  whose mean is large next to its spread this loses precision, even on one device.

## Keras 3, Keras 2 and the V1 layer

Three Keras layers have gone by this name, and they do not agree on everything. Keras 3 is
`keras.layers.BatchNormalization`; Keras 2 is the `tf_keras` package (`tf.keras` before
TensorFlow 2.16); the V1 layer is Keras 2's `tf.compat.v1.keras.layers.BatchNormalization`.

| | Keras 3 | Keras 2 | V1 layer |
|---|---|---|---|
| `trainable` off | inference formulas, no updates | the same | batch statistics still used in training; only the updates stop |
| Moving variance | biased `var_B` | biased, but unbiased (`var_B · N / (N − 1)`) on the fused kernel, the default for 4-D and 5-D inputs | as Keras 2 |
| Fused kernel | none | `fused`: on where it serves; asking for it where it cannot serve is an error | on where it serves, silently off elsewhere |
| Ghost batches, adjustment | none | `virtual_batch_size`, `adjustment` | the same |
| `axis` | one integer | an integer or a list | the same |
| Renorm clipping | `rmin ≤ rmax`, `dmax ≥ 0` checked | not checked | not checked |
| `synchronized` | one-pass variance | the same; not with `fused` | ignored |
| Masked values | left out of the statistics | weighted by the mask, so a NaN at a masked position still spoils them; the fused kernel ignores masks | as Keras 2 |
| Weight shapes | one value per feature | one per feature; ghost batches add leading 1s | as Keras 2 |

This card takes Keras 3's side wherever they differ, and adds Keras 2's options on top:

- `trainable` off means inference, as in Keras 3 and Keras 2; `trainable_semantics: "v1"`
  gives the V1 layer's meaning instead (batch statistics in training, no updates).
- The moving variance is always the biased one, with the fused kernel and ghost batches too:
  `fused` is a faster way to the same numbers, never a different formula. As in Keras 2,
  `fused: true` where the kernel cannot serve is an error on that input.
- Ghost batches follow Keras 2's strided groups, adjustment Keras 2's formula with draws from
  the run's seed; their weights keep Keras 3's shape, one value per feature, so weights move
  between this card and stock Keras either way.
- `axis` is an integer or, as in Keras 2, a list of axes normalized together (not with a mask);
  the weights of a list hold one value per combination of indices, flat. Renorm clipping is
  checked, and masked values are left out of the statistics, as in Keras 3.
"""
