"""What the step-time benchmarks share: their flags and MNIST-shaped data."""

import argparse

import numpy as np


def parse_args(description, *, steps):
    """Parses --rounds, --steps (default `steps`) and --batch_size."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch_size", type=int, default=256)
    return parser.parse_args()


def mnist_like(steps, batch_size):
    """Random 28x28x1 float32 images and int32 labels, `steps` batches."""
    rng = np.random.default_rng(0)
    count = steps * batch_size
    images = rng.random((count, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, size=count).astype(np.int32)
    return images, labels
