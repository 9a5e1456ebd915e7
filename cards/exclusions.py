"""The public layers of `keras.layers` that have no card, each with the reason.

Every other public layer class has a card whose `keras` names it (an alias such as `MaxPool2D`
shares the card of `MaxPooling2D`). The coverage test fails for a Keras layer that is neither
carded nor listed here, and for an entry here that has a card or no longer exists; the docs
render this list (`docs/cards/keras-layers.md`). Data only: no Keras import.

Some arguments of carded layers have no parameter either (`UNCARDED_ARGUMENTS`, by argument
name for every layer, or `Layer.argument` for one): a model that sets them cannot become a graph.

Preprocessing layers that can learn their state from data (`Normalization`, `Discretization`,
`IntegerLookup`) are carded in the form that takes the state as arguments; their `adapt` is not
offered, since a graph has no data before it runs.
"""

EXCLUDED: dict[str, str] = {
    # not layers a graph uses on their own
    "Layer": "The base class of every layer; it computes nothing itself.",
    "Wrapper": "The abstract base of wrappers; the concrete ones (TimeDistributed, Bidirectional, "
               "SpectralNormalization) have cards.",
    "InputLayer": "Made by the `input` card (`keras.Input`), which marks where data enters the graph.",
    "Pipeline": "A chain of preprocessing layers for `tf.data` input pipelines; in a graph, wire the "
                "layers one after another instead.",
    # code that is not a declaration
    "Lambda": "Runs an arbitrary Python function (saved as bytecode); nncards never executes code "
              "that arrives with a graph or a model.",
    "TorchModuleWrapper": "Wraps a PyTorch module: arbitrary code from another framework, which nncards "
                          "(on TensorFlow) neither runs nor inspects.",
    "JaxLayer": "Wraps a JAX function: arbitrary code from another framework, which nncards neither "
                "runs nor inspects.",
    "FlaxLayer": "Wraps a Flax module: arbitrary code from another framework, which nncards neither "
                 "runs nor inspects.",
    "TFSMLayer": "Loads a TensorFlow SavedModel from a path, with its own code and weights: a model "
                 "from outside the graph.",
    # data a graph's tensors do not carry
    "StringLookup": "Works on strings, and graph inputs carry numbers only; its vocabulary is usually "
                    "learned with `adapt` on data.",
    "TextVectorization": "Works on strings, and graph inputs carry numbers only; its vocabulary is "
                         "usually learned with `adapt` on data.",
    "MaxNumBoundingBoxes": "Acts on bounding-box annotations (a dict of boxes and labels), which a "
                           "graph's tensors do not carry.",
    "CutMix": "Pastes patches between pairs of images and mixes their labels to match; inside a model "
              "only the images pass, so the labels would no longer fit them.",
    "MixUp": "Blends pairs of images and their labels alike; inside a model only the images pass, so "
             "the labels would no longer fit them.",
    # cannot work in a graph today
    "STFTSpectrogram": "Needs SciPy to build its window, which nncards does not depend on; "
                       "MelSpectrogram covers spectrograms of audio.",
    "RandomCrop": "In Keras 3.15 it returns images uncropped at inference while the model's shapes "
                  "promise the cropped size, so layers after it break at predict; CenterCrop crops "
                  "at a fixed place instead.",
    "Equalization": "In Keras 3.15 it cannot be part of a functional model (its symbolic call makes "
                    "the graph cyclic); AutoContrast and ContrastLimitedAdaptiveHistogramEqualization "
                    "adjust contrast instead.",
}

UNCARDED_ARGUMENTS: dict[str, str] = {
    "stateful": "Carries the state from one batch to the next, which needs the batch size fixed in "
                "the model; an Input card describes one sample, never the batch.",
    "sparse": "Makes a sparse tensor; the tensors between nncards' cards are dense.",
    "quantization_config": "Quantization is applied to a trained model (`quantize`), not declared with "
                           "the layer.",
    "gptq_unpacked_column_size": "Belongs to GPTQ quantization, applied to a trained model, not declared "
                                 "with the layer.",
    "weights": "Starting weights as arrays; a RUN's `weights` sets them instead.",
    "Discretization.num_bins": "The number of bins whose boundaries `adapt` learns from data; the card "
                               "takes the boundaries themselves.",
    "Discretization.epsilon": "The accuracy of the bin boundaries `adapt` learns; the card takes the "
                              "boundaries themselves.",
    "IntegerLookup.idf_weights": "Inverse document frequencies for the `tf_idf` output mode, usually "
                                 "learned with `adapt`; the card offers the other output modes.",
    "Discretization.dtype": "The output type follows from `output_mode`.",
    "HashedCrossing.dtype": "The output type follows from `output_mode`.",
}
