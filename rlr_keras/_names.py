"""The names and limits that the command-line flags offer, without Keras.

One definition each, in a module that imports nothing: `rlr_keras.models`,
`rlr_keras.protocols` and `rlr_keras.random_factor` take them from here, and
so do the commands' flag definitions, so that `rlr-train --helpfull` does not
start Keras (and its backend).
"""

# The built-in models of the paper's Appendix C; `rlr_keras.models` has one
# builder per name (tests/models_test.py checks that the two agree).
MODEL_NAMES = ("mlp", "cnn", "vgg16")

# The learning-rate protocols of the paper's section 3 (`protocols.build`).
PROTOCOLS = ("constant", "random", "cyclic")

SEED_MAX = 2**32 - 1
"""The largest seed of the alpha stream (seeds are 32-bit words)."""
