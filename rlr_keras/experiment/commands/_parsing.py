"""Flag errors as one line and exit status 2, for every command.

absl's own parser prints "FATAL Flags parsing error: ..." and a hint, and
exits 1; the commands promise `<program>: error: <one line>` and exit status
2 (the argparse convention), whatever the flag and however it is wrong (an
unknown flag, a bad enum or number, a missing required flag, a validator).
"""

import sys

from absl import flags


def fail(program, message):
    """Writes `<program>: error: <message>` on one line; exits with 2."""
    sys.stderr.write(f"{program}: error: {' '.join(str(message).split())}\n")
    sys.exit(2)


def flags_parser(program, flag_values=flags.FLAGS):
    """Returns a `flags_parser` for `absl.app.run` that fails with `fail`."""

    def parse(argv):
        try:
            return flag_values(argv)
        except flags.Error as error:
            fail(program, error)

    return parse
