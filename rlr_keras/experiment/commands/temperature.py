r"""`rlr-temperature` (and experiments/temperature.py): the configuration with the same effective temperature.

Musso, "Stochastic gradient descent with random learning rate" (2020),
eq. 20: T = l D / (2 C (1 - mu)). Given a reference configuration (mean
learning rate l, batch size C, momentum mu) and some values of a new one,
solves for the remaining quantity so that both have the same T / D
(`rlr_keras.match_temperature`), and prints both configurations:

```
python experiments/temperature.py --learning_rate=2e-4 --batch_size=60 \
    --momentum=0 --match batch_size=30
reference: learning_rate=0.0002 batch_size=60 momentum=0 T/D=1.66667e-06
matched:   learning_rate=0.0001 batch_size=30 momentum=0 T/D=1.66667e-06
```

An invalid request prints one line `error: ...` to stderr and exits with
status 2.
"""

import sys

from absl import app
from absl import flags

from rlr_keras import _quiet
from rlr_keras.experiment.commands import _parsing


_QUANTITIES = ("learning_rate", "batch_size", "momentum")

# This script's own flags, apart from absl's global FLAGS: train.py defines
# --learning_rate, --batch_size and --momentum too, and both are imported
# into one process by the tests.
FLAGS = flags.FlagValues()
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", None, "Reference mean learning rate l.", required=True,
    flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Reference mini-batch size C.", required=True,
    flag_values=FLAGS)
_MOMENTUM = flags.DEFINE_float("momentum", 0.0, "Reference momentum mu.",
                               flag_values=FLAGS)
_MATCH = flags.DEFINE_multi_string(
    "match", [],
    "NAME=VALUE, a value of the new configuration, e.g. batch_size=30; "
    "repeat the flag for several names. The others are copied from the "
    "reference, except the one solved for.", flag_values=FLAGS)
_SOLVE_FOR = flags.DEFINE_enum(
    "solve_for", None, list(_QUANTITIES),
    "Quantity to solve for (default: the first of learning_rate, "
    "batch_size, momentum not given in --match).", flag_values=FLAGS)


def parse_match(items):
    """Returns {name: value} from NAME=VALUE strings; each name at most once."""
    parsers = {"learning_rate": float, "batch_size": int, "momentum": float}
    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in parsers:
            raise ValueError(
                "--match entries must be NAME=VALUE with NAME one of "
                f"{', '.join(_QUANTITIES)}, got {item!r}")
        if name in values:
            raise ValueError(
                f"--match gives {name} twice ({values[name]!r} and "
                f"{text!r}); give each name at most once")
        try:
            values[name] = parsers[name](text)
        except ValueError:
            raise ValueError(
                f"--match {name} must be a {parsers[name].__name__}, got "
                f"{text!r}") from None
    return values


def _describe(config):
    with _quiet.quiet_imports():  # rlr_keras imports Keras (TensorFlow).
        from rlr_keras import temperature  # pylint: disable=g-import-not-at-top

    return (f"learning_rate={config.learning_rate:.6g} "
            f"batch_size={config.batch_size} momentum={config.momentum:.6g} "
            f"T/D={temperature.effective_temperature(*config):.6g}")


def run(*, learning_rate, batch_size, momentum=0.0, match=(),
        solve_for=None):
    """Returns the two output lines (reference, matched).

    Raises:
        ValueError: for an invalid or unsolvable request.
    """
    with _quiet.quiet_imports():  # rlr_keras imports Keras (TensorFlow).
        from rlr_keras import temperature  # pylint: disable=g-import-not-at-top

    new = parse_match(match)
    reference = temperature.Hyperparameters(learning_rate, batch_size,
                                            momentum)
    try:
        matched = temperature.match_temperature(
            *reference, solve_for=solve_for,
            **{f"new_{name}": value for name, value in new.items()})
        lines = [f"reference: {_describe(reference)}",
                 f"matched:   {_describe(matched)}"]
    except OverflowError as error:
        raise ValueError(
            f"the values are beyond the float range ({error})") from None
    return lines


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    try:
        lines = run(learning_rate=_LEARNING_RATE.value,
                    batch_size=_BATCH_SIZE.value, momentum=_MOMENTUM.value,
                    match=_MATCH.value, solve_for=_SOLVE_FOR.value)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _parse_flags(argv):
    """Parses this script's flags, then absl's own (--help, --flagfile)."""
    try:
        rest = FLAGS(argv, known_only=True)
        FLAGS.validate_all_flags()
    except flags.Error as error:
        _parsing.fail("temperature.py", error)
    return _parsing.flags_parser("temperature.py")(rest)


def run_main():
    """The console script `rlr-temperature`."""
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run_main()
