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


def flagfile_error(argv, error):
    """One line for a --flagfile that is not UTF-8, naming the file(s)."""
    names = [arg.split("=", 1)[1] for arg in argv[1:]
             if arg.startswith(("--flagfile=", "-flagfile="))]
    return (f"--flagfile={','.join(names) or '?'}: not a UTF-8 text file "
            f"({error})")


def flags_parser(program, flag_values=flags.FLAGS):
    """Returns a `flags_parser` for `absl.app.run` that fails with `fail`."""

    def parse(argv):
        try:
            return flag_values(argv)
        except flags.Error as error:
            fail(program, error)
        except UnicodeDecodeError as error:
            fail(program, flagfile_error(argv, error))

    return parse
