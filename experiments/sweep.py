r"""Runs a grid of trainings (protocols x seeds x hyperparameters), resumably.

The paper's entry point, kept for its flagfiles and records: the same
command as the installed `rlr-sweep`, with the same flags
(`python experiments/sweep.py --helpfull`); the code is
`rlr_keras.experiment.commands.sweep`.
"""

from rlr_keras.experiment.commands.sweep import run_main

if __name__ == "__main__":
    run_main()
