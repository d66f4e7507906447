r"""`rlr-train` (and experiments/train.py): one run into one run folder.

The flags are the arguments of `rlr_keras.experiment.train` (the fields of
`Config`, same names); the run folder is described in
`rlr_keras.experiment` (flags.cfg, config.json, status.json, metrics.jsonl,
summary.json, model.weights.h5, tensorboard/). Errors in the flags, data or
files are one line on stderr (`train.py: error: ...`, exit status 2),
before the run folder is touched; SIGINT and SIGTERM record `failed` and
exit 130 / 143; rerunning the same command resumes.

Example (Figure 1 of the paper on the offline digits data, one run):

```
rlr-train --dataset=digits --model=mlp --protocol=random \
    --learning_rate=5e-3 --epochs=20 --output_dir=/tmp/rlr/random_seed0
```
"""

import sys

from absl import app
from absl import flags
from absl import logging

from rlr_keras import _names
from rlr_keras import _quiet
from rlr_keras import _specs
from rlr_keras.experiment import _train
from rlr_keras.experiment.commands import _parsing

_DEFAULT = _train.Config()

# The library's name lists, from the one module that defines them without
# importing Keras: `--helpfull` starts no framework (Keras is imported by
# `_train.train`, in `main`).
_MODEL_NAMES = _names.MODEL_NAMES
_PROTOCOLS = _names.PROTOCOLS
_SEED_MAX = _names.SEED_MAX

# Flags -----------------------------------------------------------------------
# Names are those of `Config`'s fields, so that a flagfile, a run's
# config.json and a call of `run` all read the same.

# Model and data.
flags.DEFINE_string(
    "model", _DEFAULT.model,
    f"Model 1 (mlp), 2 (cnn) or 3 (vgg16) of the paper's Appendix C "
    f"(one of {', '.join(_MODEL_NAMES)}), or your own: MODULE:FUNCTION "
    "(importable, e.g. on PYTHONPATH) or path/to/file.py:FUNCTION, where "
    "FUNCTION(input_shape, num_classes[, seed=]) returns an uncompiled "
    "keras.Model outputting logits.")
flags.DEFINE_string(
    "dataset", _DEFAULT.dataset,
    "A TFDS name (mnist, fashion_mnist, cifar10, ...), idx:PATH, "
    "idx-split:PATH, cifar10_batches:PATH, npz:PATH (x_train, y_train, "
    "x_test, y_test), MODULE:FUNCTION or file.py:FUNCTION (returning "
    "((x_train, y_train), (x_test, y_test)) or an ImageDataset), or digits "
    "(bundled, offline).")
flags.DEFINE_string(
    "data_dir", _DEFAULT.data_dir, "TFDS data folder (TFDS names only).")
flags.DEFINE_string(
    "image_size", _DEFAULT.image_size,
    "H,W: resize the images (bilinear) to H x W pixels, e.g. 28,28 to train "
    "the cnn on the 8x8 digits. Default: native size.")
flags.DEFINE_integer(
    "train_subset", _DEFAULT.train_subset,
    "Train on the first N examples of the training split only (as the "
    "dataset orders them; each epoch shuffles them with --seed), e.g. for "
    "a smoke test; --evaluate_train and --temperature_probe use them too. "
    "Default: the whole split.", lower_bound=1)
flags.DEFINE_string(
    "vgg_weights", _DEFAULT.vgg_weights,
    "vgg16 only: imagenet (downloads), none (random init) or the path of a "
    "local VGG16 no-top weights file. Defaults to imagenet for vgg16.")

# Protocol and optimizer.
flags.DEFINE_enum(
    "protocol", _DEFAULT.protocol, _PROTOCOLS,
    "Learning-rate protocol (paper section 3).")
flags.DEFINE_float(
    "learning_rate", _DEFAULT.learning_rate, "Mean learning rate l.")
flags.DEFINE_float(
    "delta", _DEFAULT.delta,
    "Half-width Delta of the random factor alpha ~ U[1-Delta, 1+Delta]: "
    "random protocol only, in (0, 1]; defaults to 1 (alpha in [0, 2]).")
flags.DEFINE_float(
    "period", _DEFAULT.period,
    "Period P in epochs of the cyclic protocol, l (1 + cos(pi tau / P)); "
    "cyclic protocol only (the paper uses 6, 18, 30).")
flags.DEFINE_float(
    "momentum", _DEFAULT.momentum, "Momentum mu, in [0, 1).")
flags.DEFINE_bool(
    "nesterov", _DEFAULT.nesterov,
    "Nesterov momentum. Defaults to true when --momentum > 0, false for "
    "--momentum=0 (where Nesterov is undefined).")
flags.DEFINE_float(
    "coupled_weight_decay", _DEFAULT.coupled_weight_decay,
    "Coupled (L2, PyTorch-style) weight decay w, added to the gradient: "
    "g + w theta (RandomLRSGD's coupled_weight_decay; called --weight_decay "
    "before 0.2.0).")
# Refused, so that no one gets Keras' decoupled decay thinking it the
# paper's coupled one, or the reverse (`_train.weight_decay_message`).
flags.DEFINE_float(
    "weight_decay", None,
    "Refused: Keras' weight_decay is decoupled (subtracted from the "
    "weights); the paper's coupled L2 term is --coupled_weight_decay.")
flags.register_validator("weight_decay", lambda value: value is None,
                         message=_train.weight_decay_message())

# Training.
flags.DEFINE_integer(
    "batch_size", _DEFAULT.batch_size, "Mini-batch size C.", lower_bound=1)
flags.DEFINE_integer(
    "epochs", _DEFAULT.epochs, "Number of epochs.", lower_bound=1)
flags.DEFINE_integer(
    "seed", _DEFAULT.seed,
    "Seed of the initial weights, the data order and the random factor.",
    lower_bound=0, upper_bound=_SEED_MAX)
flags.DEFINE_bool(
    "deterministic", _DEFAULT.deterministic,
    "Bit-identical reruns and resumes: enables TensorFlow op determinism on "
    "the TensorFlow backend; JAX and PyTorch on CPU need nothing.")
flags.DEFINE_integer(
    "temperature_probe", _DEFAULT.temperature_probe,
    "Size of the probe set (from the training split) on which the "
    "temperature monitor measures D and T; 0 turns the monitor off.",
    lower_bound=0)
flags.DEFINE_integer(
    "alpha_log_steps", _DEFAULT.alpha_log_steps,
    "Write alpha and l * alpha to TensorBoard every this many optimizer "
    "steps (per-epoch statistics of alpha are always written).",
    lower_bound=1)
flags.DEFINE_integer(
    "temperature_every", _DEFAULT.temperature_every,
    "Measure D and T every this many epochs.", lower_bound=1)
flags.DEFINE_bool(
    "evaluate_train", _DEFAULT.evaluate_train,
    "After every epoch, evaluate the whole training set "
    "(train_eval_loss, train_eval_accuracy; the generalization gap uses "
    "it). Costs one pass over the training set without updates per epoch.")

# Performance.
flags.DEFINE_bool(
    "jit_compile", _DEFAULT.jit_compile, "Compile the training step with XLA.")
flags.DEFINE_bool(
    "mixed_precision", _DEFAULT.mixed_precision,
    "Compute in float16 with float32 variables (mixed_float16 policy).")
flags.DEFINE_integer(
    "steps_per_execution", _DEFAULT.steps_per_execution,
    "Training steps run per call of the compiled step (the progress bar "
    "moves once per call); must divide the steps per epoch (an exact resume "
    "needs epochs that end on a call boundary). It changes no result. "
    "Default: the largest divisor of the steps per epoch up to "
    f"{_train.AUTO_STEPS_PER_EXECUTION_MAX} (1 on PyTorch and under tf.distribute, "
    "where Keras runs one step per call).",
    lower_bound=1)
flags.DEFINE_float(
    "backup_every_s", _DEFAULT.backup_every_s,
    "Back up the training state (for an exact resume after a kill) at the "
    "end of the first epoch that ends this many seconds or more after the "
    "previous backup; a killed run redoes at most about this much "
    "training. 0: after every epoch (always so under multi_worker, where "
    "all workers must back up together). It changes no result.",
    lower_bound=0.0)
flags.DEFINE_enum(
    "distribution", _DEFAULT.distribution,
    ["none", "mirrored", "multi_worker", "data_parallel"],
    "Data parallelism: none; on TensorFlow, tf.distribute's mirrored (every "
    "local GPU) or multi_worker (the hosts of the TF_CONFIG environment "
    "variable); on JAX, data_parallel (keras.distribution.DataParallel over "
    "every local device). --batch_size stays the global batch C, split "
    "among the replicas (it must divide evenly).")

# Output.
flags.DEFINE_string(
    "output_dir", _DEFAULT.output_dir,
    "The run folder (created if needed). Required.")
flags.DEFINE_integer(
    "verbose", _DEFAULT.verbose,
    "0: warnings and errors only; 1: Keras progress bar and info logs; "
    "2: one line per epoch and info logs.", lower_bound=0, upper_bound=2)

# The flags that are arguments of `run`, in the order flags.cfg lists them.

def _valid_model(value):
    # A recorded callable (callable:...) passes, so that the run says why
    # it cannot be replayed from the command line.
    if isinstance(value, str) and value.startswith("callable:"):
        return True
    try:
        _specs.check_model_spec(value)
    except (TypeError, ValueError):
        return False
    return True


flags.register_validator(
    "model", _valid_model,
    message=f"--model must be one of {', '.join(_MODEL_NAMES)}, "
    "MODULE:FUNCTION or path/to/file.py:FUNCTION")

def arguments_from_flags(flag_values=flags.FLAGS):
    """Returns the keyword arguments of `run` given by the parsed flags."""
    return {name: flag_values[name].value for name in _train.ARGUMENT_NAMES}


def config_from_flags(flag_values=flags.FLAGS):
    """Returns the `Config` given by the parsed flags."""
    return _train.Config(**arguments_from_flags(flag_values))



def main(argv):
    """The command: trains the run that the flags describe."""
    if len(argv) > 1:
        print(f"train.py: error: unexpected arguments {argv[1:]}; every "
              "option is a --flag", file=sys.stderr)
        return 2
    config = config_from_flags()
    _quiet.quiet_jax_backends()
    logging.set_verbosity(logging.WARNING if config.verbose == 0
                          else logging.INFO)
    _train.handle_interrupts()
    try:
        _train.train(config)
    except _train.USER_ERRORS as error:
        print(f"train.py: error: {_train.as_flag_message(error)}",
              file=sys.stderr)
        return 2
    except FloatingPointError as error:
        print(f"train.py: {_train.one_line(error)}", file=sys.stderr)
        return 1
    except OSError as error:  # A full disk, an I/O error: not the flags.
        print(f"train.py: error: {_train.one_line(error)}; the run's status "
              "is failed, rerun the same command to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:
        print(f"train.py: {_train.one_line(error) or 'interrupted'}; the "
              "run's status is failed, rerun the same command to resume",
              file=sys.stderr)
        return 143 if isinstance(error, _train.Terminated) else 130
    return 0


def run_main():
    """The console script `rlr-train`."""
    flags.mark_flag_as_required("output_dir")
    app.run(main, flags_parser=_parsing.flags_parser("train.py"))


if __name__ == "__main__":
    run_main()
