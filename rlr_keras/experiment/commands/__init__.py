"""The installed commands: rlr-train, rlr-sweep, rlr-plot, rlr-temperature.

Each module defines its absl flags and `run_main()`, the console script;
importing one defines its flags in `absl.flags.FLAGS`, so the library
(`rlr_keras.experiment`) never imports them.
"""
