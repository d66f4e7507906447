"""One worker of the multi-worker tests in `distribution_test.py`.

Trains Model 1 with RandomLRSGD on deterministic MNIST-shaped random data,
under the strategy chosen by `--distribution` (TF_CONFIG from the
environment for `multi_worker`), with the run-folder layout of `train.py`:
the chief writes `<run_dir>/{status.json,summary.json,tensorboard,backup}`,
the other workers write to `_distribution.write_dir`. Each worker saves its final
weights and the alpha it applied at every step to `--output` (an .npz).

    PYTHONPATH=.:experiments TF_CONFIG=... \
        python tests/_multi_worker_script.py --run_dir=DIR \
        --output=worker0.npz --distribution=multi_worker
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

NUM_EXAMPLES = 256
GLOBAL_BATCH_SIZE = 32
EPOCHS = 3
MODEL_SEED = 0
OPTIMIZER_KWARGS = dict(learning_rate=0.05, delta=1.0, momentum=0.9,
                        nesterov=True, seed=1234)


def make_data(num_examples=NUM_EXAMPLES, seed=0):
    """Returns (images, labels): random float32 28x28x1 images, 10 classes."""
    rng = np.random.default_rng(seed)
    images = rng.random((num_examples, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, size=num_examples).astype(np.int32)
    return images, labels


def build_and_compile():
    """Returns (model, optimizer) of the test; call it inside the scope."""
    import keras

    import rlr_keras
    from rlr_keras.models import build_model

    model = build_model("mlp", (28, 28, 1), 10, seed=MODEL_SEED)
    optimizer = rlr_keras.RandomLRSGD(**OPTIMIZER_KWARGS)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    return model, optimizer


def make_alpha_recorder(optimizer):
    """Returns a callback listing the alpha_k of each step, and the list."""
    import keras

    alphas = []

    class _AlphaRecorder(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            alphas.append(float(optimizer.alpha_at(optimizer.iterations)))

    return _AlphaRecorder(), alphas


def train(strategy, run_dir, *, epochs=EPOCHS, seconds_per_step=0.0):
    """Trains under `strategy` with the run-folder layout of `train.py`.

    Returns:
        A dict with the final `weights` (list of arrays), the `alphas`
        applied at the steps this call ran, `iterations` and `epochs_run`.
    """
    import keras
    import tensorflow as tf

    from rlr_keras.experiment import _distribution
    from rlr_keras.experiment import _rundir

    chief = _distribution.is_chief(strategy)
    if chief:
        _rundir.write_status(run_dir, _rundir.RUNNING)
    _distribution.replica_batch_size(GLOBAL_BATCH_SIZE, strategy)
    images, labels = make_data()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(
        GLOBAL_BATCH_SIZE)
    dataset = _distribution.distribute_dataset(dataset, strategy)
    out = _distribution.write_dir(run_dir, strategy)
    with strategy.scope():
        model, optimizer = build_and_compile()
        recorder, alphas = make_alpha_recorder(optimizer)
        callbacks = [
            keras.callbacks.BackupAndRestore(
                _distribution.backup_dir(run_dir, strategy)),
            keras.callbacks.TensorBoard(os.path.join(out, "tensorboard")),
            recorder,
        ]
        if seconds_per_step:
            callbacks.append(keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda batch, logs=None: time.sleep(
                    seconds_per_step)))
        history = model.fit(dataset, epochs=epochs, callbacks=callbacks,
                            shuffle=False, verbose=0)
    iterations = int(optimizer.iterations.numpy())
    if chief:
        _rundir.write_json(os.path.join(run_dir, _rundir.SUMMARY_FILE), {
            "final_train_loss": history.history["loss"][-1],
            "num_replicas": strategy.num_replicas_in_sync,
            "iterations": iterations,
        })
        _rundir.write_status(run_dir, _rundir.DONE)
    _distribution.remove_write_dir(run_dir, strategy)
    return {"weights": model.get_weights(), "alphas": alphas,
            "iterations": iterations,
            "epochs_run": len(history.history["loss"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--distribution", default="multi_worker")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seconds_per_step", type=float, default=0.0,
                        help="sleep after each step (to be killed mid-run)")
    args = parser.parse_args()

    import tensorflow as tf

    # The workers share the test machine's few cores.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)

    from rlr_keras.experiment import _distribution

    strategy = _distribution.make_strategy(args.distribution)
    result = train(strategy, args.run_dir, epochs=args.epochs,
                   seconds_per_step=args.seconds_per_step)
    np.savez(args.output, alphas=np.asarray(result["alphas"], np.float32),
             iterations=result["iterations"],
             epochs_run=result["epochs_run"],
             **{f"w{i}": w for i, w in enumerate(result["weights"])})
    print(json.dumps({"done": True, "chief": _distribution.is_chief(strategy),
                      "output": args.output}))


if __name__ == "__main__":
    main()
