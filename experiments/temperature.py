r"""Finds the training configuration with the same effective temperature.

The paper's entry point, kept for its flagfiles and records: the same
command as the installed `rlr-temperature`, with the same flags
(`python experiments/temperature.py --helpfull`); the code is
`rlr_keras.experiment.commands.temperature`.
"""

from rlr_keras.experiment.commands.temperature import run_main

if __name__ == "__main__":
    run_main()
