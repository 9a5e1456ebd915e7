"""Attention layers: multi-head and grouped-query attention with learned projections, and the
weightless dot-product and additive attention of a query sequence over a value sequence.

Each output position of the query is a weighted average of the value sequence's positions, the
weights (attention scores) coming from how well query and key match. `use_causal_mask` and
`return_attention_scores` are options of the Keras call, so they are call options of the cards.
"""

from typing import Literal

from nncards.card import (ACTIVITY, LAYER, LAYER_OUTPUT, SEED, TENSOR_OUTPUT, USE_BIAS, KerasLayerCard,
                          Port, arguments, flag, fraction, param, tensor_input, weights)
from nncards.cards.merging import TensorListCard

CALL_OPTIONS = {
    **flag("use_causal_mask", False, "Causal mask",
           "Let each query position attend only to key positions at or before it, as a decoder that "
           "generates a sequence step by step must."),
    **flag("return_attention_scores", False, "Return attention scores",
           "Also output the attention scores on their own port."),
}
SCORES = Port("attention_scores", "NeuralNetworkTensor", "Attention scores",
              "How much each query position attends to each key position (each row sums to one); "
              "present when `return_attention_scores` is on.")
DROPOUT = fraction("dropout", "Dropout", "In training, fraction of the attention scores dropped.")


class AttentionCard(KerasLayerCard):
    path = ("Layers", "Attention")
    outputs = (LAYER_OUTPUT, TENSOR_OUTPUT, SCORES)
    call_options = tuple(CALL_OPTIONS)
    example_input_shape = (3, 4)

    @classmethod
    def attend(cls, layer, params, sockets):
        return layer(**cls.call_arguments(params, sockets))

    @classmethod
    def build(cls, node, params, sockets):
        layer = cls.make_layer(node, params, sockets)
        result = cls.attend(layer, params, sockets)
        if params.return_attention_scores:
            output, scores = result
            return {"layer": layer, "output": output, "attention_scores": scores}
        return {"layer": layer, "output": result}


# -- with learned projections: the query, key and value sequences arrive on sockets of their own -----

PROJECTED_SOCKETS = (
    tensor_input("query", "Query", "The sequence that asks, `(batch, query steps, features)`; the "
                 "output has one position per query position.", required=True),
    tensor_input("value", "Value", "The sequence attended over, `(batch, value steps, features)`; its "
                 "positions are averaged into the output. Wire the query here too for self-attention.",
                 required=True),
    tensor_input("key", "Key", "Optional sequence compared with the query to score the value positions, "
                 "shaped like the value; the value itself when not wired."),
    tensor_input("attention_mask", "Attention mask",
                 "Optional boolean `(batch, query steps, value steps)`: where it is false, that query "
                 "position does not attend to that value position."),
)
PROJECTION_WEIGHTS = {
    **weights("kernel", "glorot_uniform", "the projection kernels"),
    **weights("bias", "zeros", "the projection biases"),
    **ACTIVITY,
}
PROJECTION_OPTIONS = {
    "sliding_window": (int | None, param(
        None, text="Sliding window", ge=1,
        help="When set, each query position attends only to the key positions at most this far away "
        "(local attention); empty: to all of them.")),
    "flash_attention": (bool | None, param(
        None, text="Flash attention",
        help="The memory-saving fused attention kernel: on, off, or empty to use it where the backend and "
        "device offer it. It cannot return attention scores.")),
    **flag("use_gate", False, "Gate",
           "Multiply the attention output by a learned sigmoid gate of the query before the output "
           "projection."),
}


class ProjectedAttentionCard(AttentionCard):
    sockets = PROJECTED_SOCKETS
    weight_ranks = {"kernel_initializer": 3, "bias_initializer": 1}  # per-head kernels: (features, heads, size)


class MultiHeadAttention(ProjectedAttentionCard):
    title = "Multi-head attention layer"
    help = (
        "Attention in several heads at once, the core of the transformer: query, key and value "
        "are projected per head to `key_dim` (and `value_dim`) features, each head attends on its "
        "own, and the heads' results are projected back to the query's features (or to "
        "`output_shape`). Wire one sequence to both query and value for self-attention."
    )
    Params = arguments(
        "MultiHeadAttentionParams", [
            {"num_heads": 2, "key_dim": 2},
            {"num_heads": 2, "key_dim": 3, "value_dim": 2, "dropout": 0.1, "use_causal_mask": True},
            {"num_heads": 1, "key_dim": 2, "output_shape": [5], "return_attention_scores": True},
        ],
        num_heads=(int, param(..., text="Heads", ge=1, help="Number of attention heads.")),
        key_dim=(int, param(..., text="Key size", ge=1, help="Features per head of the projected query and key.")),
        value_dim=(int | None, param(None, text="Value size", ge=1,
                                     help="Features per head of the projected value; empty: `key_dim`.")),
        **DROPOUT, **USE_BIAS,
        output_shape=(list[int] | None, param(
            None, text="Output shape", min_length=1,
            help="Shape of each output position (without batch and steps), e.g. `[8]`; empty: the "
            "query's features.")),
        attention_axes=(list[int] | None, param(
            None, text="Attention axes", min_length=1,
            help="The axes attended over, for inputs with several position axes (e.g. `[1, 2]` for "
            "the rows and columns of an image); empty: every axis between batch and features.")),
        **PROJECTION_OPTIONS, **PROJECTION_WEIGHTS, **SEED, **CALL_OPTIONS, **LAYER,
    )


class GroupQueryAttention(ProjectedAttentionCard):
    title = "Grouped-query attention layer"
    help = (
        "Multi-head attention in which groups of query heads share one key head and one value head: "
        "`num_query_heads` must be a multiple of `num_key_value_heads`. Fewer key and value "
        "projections make it cheaper in memory, which large language models use; with as many "
        "key/value heads as query heads it is plain multi-head attention."
    )
    Params = arguments(
        "GroupQueryAttentionParams", [
            {"head_dim": 2, "num_query_heads": 2, "num_key_value_heads": 1},
            {"head_dim": 2, "num_query_heads": 4, "num_key_value_heads": 2, "use_causal_mask": True},
        ],
        head_dim=(int, param(..., text="Head size", ge=1, help="Features per head.")),
        num_query_heads=(int, param(..., text="Query heads", ge=1, help="Number of query heads.")),
        num_key_value_heads=(int, param(
            ..., text="Key/value heads", ge=1,
            help="Number of key heads (and of value heads); divides `num_query_heads`.")),
        **DROPOUT, **USE_BIAS, **PROJECTION_OPTIONS, **PROJECTION_WEIGHTS, **SEED, **CALL_OPTIONS, **LAYER,
    )


# -- weightless scoring: called on the list [query, value] or [query, value, key] ------------------

class ListAttentionCard(AttentionCard, TensorListCard):
    sockets = (tensor_input(
        "inputs", "Inputs",
        "In edge order: the query `(batch, query steps, features)`, the value `(batch, value steps, "
        "features)` and optionally the key, shaped like the value (the value itself when missing).",
        required=True, multiplicity="n"),)
    input_count = (2, 3)

    @classmethod
    def attend(cls, layer, params, sockets):
        return layer(sockets["inputs"], **cls.call_arguments(params, sockets))


class Attention(ListAttentionCard):
    title = "Dot-product attention layer"
    help = (
        "Attention without projections (Luong style): scores are the dot products of query and key "
        "positions (or their tanh-sum with `score_mode` `concat`), turned into weights by a softmax "
        "over the key positions; the output averages the value positions with those weights. Query "
        "and value need the same number of features."
    )
    Params = arguments(
        "AttentionParams", [{}, {"use_scale": True, "score_mode": "concat", "use_causal_mask": True}],
        **flag("use_scale", False, "Learned scale", "Multiply the scores by a learned scalar."),
        score_mode=(Literal["dot", "concat"], param(
            "dot", text="Score mode",
            help="`dot`: the dot product of query and key; `concat`: the sum of tanh of query and key.")),
        **DROPOUT, **SEED, **CALL_OPTIONS, **LAYER,
    )


class AdditiveAttention(ListAttentionCard):
    title = "Additive attention layer"
    help = (
        "Attention without projections (Bahdanau style): each score is the sum over features of "
        "`tanh(query + key)`, optionally scaled per feature by learned weights; a softmax over the "
        "key positions turns scores into weights that average the value positions. Query and value "
        "need the same number of features."
    )
    Params = arguments(
        "AdditiveAttentionParams", [{}, {"use_scale": False, "return_attention_scores": True}],
        **flag("use_scale", True, "Learned scale", "Scale the scores per feature by learned weights."),
        **DROPOUT, **CALL_OPTIONS, **LAYER,
    )


CARDS = [MultiHeadAttention, GroupQueryAttention, Attention, AdditiveAttention]
