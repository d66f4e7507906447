r"""Draws the paper's kinds of figure and tables from run folders.

The paper's entry point, kept for its flagfiles and records: the same
command as the installed `rlr-plot`, with the same flags
(`python experiments/plot.py --helpfull`); the code is
`rlr_keras.experiment.commands.plot`.
"""

from rlr_keras.experiment.commands.plot import run_main

if __name__ == "__main__":
    run_main()
