r"""Trains one model with one learning-rate protocol into a self-describing run folder.

The paper's entry point, kept for its flagfiles and records: the same
command as the installed `rlr-train`, with the same flags
(`python experiments/train.py --helpfull`); the code is
`rlr_keras.experiment.commands.train`.
"""

from rlr_keras.experiment.commands.train import run_main

if __name__ == "__main__":
    run_main()
