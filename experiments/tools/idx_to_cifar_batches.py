r"""Writes MNIST-format images as CIFAR-10 python batches (a smoke-test aid).

Model 3 (VGG16) reads `--dataset=cifar10_batches:PATH`. Where CIFAR-10 is not
at hand (our offline machines), this turns real MNIST-format images into that
format, padded from 28x28 to 32x32 and repeated over the three colour planes,
so that the whole VGG16 path (reader, preprocessing, model, training loop)
can be exercised. It is a plumbing check, not CIFAR-10: results on it say
nothing about the paper's Figure 4.

    python experiments/tools/idx_to_cifar_batches.py \
        --idx=/usr/share/datasets/fashion-mnist --out=/tmp/fashion-cifar \
        --train_examples=2560 --test_examples=1000
"""

import argparse
import os
import pickle

import numpy as np

from rlr_keras import data


def _write_batch(path, images, labels):
    padded = np.pad(images[..., 0], ((0, 0), (2, 2), (2, 2)))
    planes = np.repeat(padded.reshape(len(images), 1, 1024), 3, axis=1)
    with open(path, "wb") as f:
        pickle.dump({"data": planes.reshape(len(images), 3072),
                     "labels": [int(v) for v in labels]}, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idx", required=True,
                        help="folder of MNIST-format IDX files (idx: spec)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train_examples", type=int, default=2560)
    parser.add_argument("--test_examples", type=int, default=1000)
    args = parser.parse_args()
    source = data.load_dataset(f"idx:{args.idx}")
    os.makedirs(args.out, exist_ok=True)
    train_x = source.train_images[: args.train_examples]
    train_y = source.train_labels[: args.train_examples]
    for i, (x, y) in enumerate(zip(np.array_split(train_x, 5),
                                   np.array_split(train_y, 5)), start=1):
        _write_batch(os.path.join(args.out, f"data_batch_{i}"), x, y)
    _write_batch(os.path.join(args.out, "test_batch"),
                 source.test_images[: args.test_examples],
                 source.test_labels[: args.test_examples])
    print(f"wrote {len(train_x)} train and "
          f"{min(args.test_examples, source.num_test)} test images to "
          f"{args.out}")


if __name__ == "__main__":
    main()
