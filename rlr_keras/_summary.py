"""TensorBoard event files on every Keras backend, without TensorFlow.

The one writer of the library's callbacks: a thin layer over
`tensorboardX.SummaryWriter` (pure Python, a core dependency). Scalars are
float32 `simple_value`s and histograms TensorBoard's histogram proto, both
shown by TensorBoard next to the tensor summaries that
`keras.callbacks.TensorBoard` writes. `read_events` reads all of them back
(tests, plots) without TensorFlow.
"""

import collections
import glob
import itertools
import os

import numpy as np


# Two writers of one directory opened in the same second (the monitors and
# EpochSummaries all write `<log_dir>/train`) need distinct file names.
_FILE_NUMBERS = itertools.count()


class SummaryWriter:
    """Writes scalars and histograms into one TensorBoard run directory.

    Args:
        log_dir: str or path-like: the run directory (created on the first
            write), e.g. `<log_dir>/train`.
    """

    def __init__(self, log_dir):
        self.log_dir = os.fspath(log_dir)
        self._writer = None

    def _get(self):
        if self._writer is None:
            # Imported here: reading TensorBoard files needs no writer.
            import tensorboardX  # pylint: disable=g-import-not-at-top

            self._writer = tensorboardX.SummaryWriter(
                self.log_dir,
                filename_suffix=f".{os.getpid()}.{next(_FILE_NUMBERS)}")
        return self._writer

    def scalar(self, tag, value, step):
        """Writes a float32 scalar `value` under `tag` at int `step`."""
        self._get().add_scalar(tag, float(np.float32(value)), int(step))

    def histogram(self, tag, values, step):
        """Writes a histogram of `values` under `tag` at int `step`."""
        self._get().add_histogram(
            tag, np.asarray(values, dtype=np.float64).ravel(), int(step),
            bins="tensorflow")

    def flush(self):
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_events(log_dir):
    """Returns {tag: [(step, value), ...]} from the event files in `log_dir`.

    Points are sorted by step. A scalar is a NumPy scalar of the dtype it was
    written with; a histogram is an (k, 3) array of [left edge, right edge,
    count] rows, as `tf.summary.histogram` writes it.
    """
    # tensorboard falls back to its own stub when TensorFlow is absent.
    from tensorboard.backend.event_processing import (  # pylint: disable=g-import-not-at-top
        event_file_loader)
    from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top

    points = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(os.fspath(log_dir),
                                              "events.out.tfevents.*"))):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.HasField("tensor"):
                    data = tensor_util.make_ndarray(value.tensor)
                elif value.HasField("histo"):
                    histo = value.histo
                    limits = np.asarray(histo.bucket_limit)
                    left = np.concatenate([[histo.min], limits[:-1]])
                    right = np.minimum(limits, histo.max)
                    data = np.stack([left, right, histo.bucket], axis=1)
                else:
                    data = np.float32(value.simple_value)
                points[value.tag].append((event.step, data))
    return {tag: sorted(values, key=lambda p: p[0])
            for tag, values in points.items()}
