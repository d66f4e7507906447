"""The Keras callbacks of train.py: divergence stop, training-set evaluation,
the metrics file.

A module of its own so that train.py imports Keras only when it trains
(`--help` and flag errors stay instant).
"""

import math
import time

import keras

from rlr_keras.experiment import _rundir

# Keras' epoch-log names -> metrics.jsonl names.
_RENAMES = {"loss": "train_loss", "accuracy": "train_accuracy",
            "val_loss": "test_loss", "val_accuracy": "test_accuracy"}


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises FloatingPointError at the end of an epoch whose loss is NaN/inf.

    The epoch's loss is Keras' running mean over its batches, so a NaN or
    infinite loss in any batch makes it non-finite. It is read once per epoch
    (reading it every batch costs a host sync per step). Listed before
    MetricsRecorder and BackupAndRestore: raising ends `fit` before they
    run, so neither metrics.jsonl nor the backup records the diverged epoch.
    """

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"training loss became {float(loss)} in epoch {epoch + 1}; "
                "the run stopped (lower --learning_rate, or check the data)")


class TrainEvaluation(keras.callbacks.Callback):
    """Evaluates the model on the whole training set after every epoch.

    Adds `train_eval_loss` and `train_eval_accuracy` to the epoch logs: the
    loss and accuracy of the end-of-epoch weights on the training split
    (unshuffled, no update), comparable with the test metrics, unlike Keras'
    running means over the epoch (`loss`, `accuracy`).

    Args:
        data: the evaluation pipeline of the training split.
        steps: int, its number of batches.
    """

    def __init__(self, data, steps):
        super().__init__()
        self.data = data
        self.steps = steps

    def on_epoch_end(self, epoch, logs=None):
        results = self.model.evaluate(self.data, steps=self.steps, verbose=0,
                                      return_dict=True)
        if logs is not None:
            for name, value in results.items():
                logs[f"train_eval_{name}"] = float(value)


class MetricsRecorder(keras.callbacks.Callback):
    """Writes metrics.jsonl at the end of every epoch (atomically).

    Listed before BackupAndRestore, so that a kill between the two writes
    leaves a metrics row for an epoch the backup does not hold; the first
    epoch of the next attempt drops such rows.
    """

    def __init__(self, path, expected_initial_epoch):
        super().__init__()
        self.path = path
        self.expected_initial_epoch = expected_initial_epoch
        self.rows = None
        self.start = None
        self.previous_wall_time = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        if self.rows is not None:
            return
        if epoch != self.expected_initial_epoch:
            raise RuntimeError(
                f"BackupAndRestore resumed at epoch {epoch}, but its "
                f"metadata said {self.expected_initial_epoch}")
        self.rows = [row for row in _rundir.read_jsonl(self.path)
                     if row["epoch"] <= epoch]
        if len(self.rows) != epoch:
            raise RuntimeError(
                f"{self.path} holds {len(self.rows)} epochs, but the "
                f"backup resumes after epoch {epoch}")
        if self.rows:
            self.previous_wall_time = self.rows[-1]["wall_time_s"]
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        for key, value in (logs or {}).items():
            name = _RENAMES.get(key, key)
            if name.startswith("val_"):
                name = "test_" + name[len("val_"):]
            row[name] = float(value)
        if "learning_rate" not in row:
            row["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
        row["wall_time_s"] = (self.previous_wall_time
                              + time.monotonic() - self.start)
        self.rows.append(row)
        _rundir.write_jsonl(self.path, self.rows)


class EpochBackup(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` at an epoch's end, async-safe.

    Backs up at the end of the first epoch that ends `every_s` seconds or
    more after the previous backup (or the start): a killed run redoes at
    most about that much training, and resumes exactly (every backup is at
    an epoch's end). A backup costs a weights file write and copy (about
    14 ms for Model 1 on the 2-core CPU, a fair part of its 0.2 s epoch,
    and hundreds of MB per epoch for VGG16); `every_s=0` backs up every
    epoch.

    With `save_freq="epoch"` its batch hook does nothing, but overriding it
    makes Keras call every batch-end hook synchronously, with a host
    synchronisation per step. Declared async-safe, it lets Keras (on JAX and
    PyTorch) dispatch batch ends to a worker thread, as plain `fit` does.

    Args:
        backup_dir: the backup folder.
        every_s: float >= 0, the least time in seconds between two backups.
    """

    async_safe = True

    def __init__(self, backup_dir, every_s=0.0):
        super().__init__(backup_dir, save_freq="epoch",
                         double_checkpoint=True, delete_checkpoint=False)
        self.every_s = every_s
        self._last_backup = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._last_backup = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() - self._last_backup >= self.every_s:
            super().on_epoch_end(epoch, logs)
            self._last_backup = time.monotonic()
