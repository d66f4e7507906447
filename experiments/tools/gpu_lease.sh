#!/usr/bin/env bash
# One GPU lease: a resumable CIFAR-10 sweep on Keras' JAX backend, brought
# back as compact run records that plot.py turns into the tables.
#
# The lent machine (the session's `device` tool: one H100/H200 for 15 minutes
# in all, JAX but no TensorFlow, no package registry, at most 64 MiB carried
# per call, warm for 30 s after a call) runs this script from the repository
# root. Prepare here, once:
#
#   bash experiments/tools/gpu_lease.sh prepare /path/to/shared/data/cifar10
#
# which downloads the wheels the machine lacks into .whl/ (keras, namex,
# optree, tensorboardX) and splits the six xz batches into .lease/part1..3
# (two ~23 MB batches each); both folders are git-ignored. Then, calls of the
# device tool in a row, so that the machine stays warm:
#
#   run(carry=[".lease/part1"], command="bash experiments/tools/gpu_lease.sh stage")
#   run(carry=[".lease/part2"], command="bash experiments/tools/gpu_lease.sh stage")
#   run(carry=[".lease/part3", ".whl"], timeout_s=600,
#       command="bash experiments/tools/gpu_lease.sh run 540 fig4 experiments/configs/fig4.cfg --seeds=0,1,2")
#
# `stage` copies the carried batches into /tmp/cifar10 on the machine (the
# loader reads the .xz files directly). `run BUDGET_S NAME FLAGFILE [FLAGS]`
# installs the wheels, copies the committed records of docs/results/NAME/runs
# into the sweep root (runs already done are skipped: each lease continues
# the grid), runs experiments/sweep.py on KERAS_BACKEND=jax with
# --dataset=cifar10_batches:/tmp/cifar10 --vgg_weights=none, stops it cleanly
# with SIGTERM when BUDGET_S seconds are spent (the run in progress is marked
# failed and restarts next time; a sweep still importing simply ends; a
# signal that Python drops in a gc callback is raised again, see
# rlr_keras.experiment._train.handle_interrupts), and writes
# to $OUT:
#   records.tar.gz  config.json, metrics.jsonl, summary.json, status.json and
#                   flags.cfg of every run folder (no weights, no events)
#   lease.log       the sweep's log; card.txt the GPU's name
# Back here: bash experiments/tools/gpu_lease.sh unpack FILES_AT NAME, then
#   python experiments/plot.py --runs=docs/results/NAME/runs --plot_dir=docs/results/NAME
#
# Tested on CPU (tests/experiments_lease_test.py runs `run` and `unpack`
# with OUT and the RLR_LEASE_* folders set to temporary ones, on a small
# CIFAR-format folder the test writes, including a stop at the budget).
set -euo pipefail
cd "$(dirname "$0")/../.."

# Where things are; the tests point these at temporary folders.
cifar_dir=${RLR_LEASE_CIFAR_DIR:-/tmp/cifar10}
parts_dir=${RLR_LEASE_PARTS:-.lease}
wheels_dir=${RLR_LEASE_WHEELS:-.whl}
results_dir=${RLR_LEASE_RESULTS:-docs/results}

case "${1:-}" in
  prepare)
    source_dir=${2:?usage: gpu_lease.sh prepare CIFAR10_XZ_FOLDER}
    mkdir -p .whl .lease/part1 .lease/part2 .lease/part3
    grep -qx '/.lease/' .git/info/exclude 2>/dev/null \
      || echo /.lease/ >> .git/info/exclude
    keras_version=$(python -c "import keras; print(keras.__version__)")
    python -m pip download -q --no-deps --only-binary=:all: \
      --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform any -d .whl \
      "keras==$keras_version" namex optree tensorboardX
    cp "$source_dir"/data_batch_1.xz "$source_dir"/data_batch_2.xz .lease/part1/
    cp "$source_dir"/data_batch_3.xz "$source_dir"/data_batch_4.xz .lease/part2/
    cp "$source_dir"/data_batch_5.xz "$source_dir"/test_batch.xz \
      "$source_dir"/batches.meta .lease/part3/
    du -sh .whl .lease/part*
    ;;
  stage)
    mkdir -p "$cifar_dir"
    for part in "$parts_dir"/part1 "$parts_dir"/part2 "$parts_dir"/part3; do
      if [ -d "$part" ]; then cp "$part"/* "$cifar_dir"/ 2>/dev/null || true; fi
    done
    ls -la "$cifar_dir"
    ;;
  run)
    budget=${2:?usage: gpu_lease.sh run BUDGET_S NAME FLAGFILE [FLAGS...]}
    name=${3:?NAME}
    flagfile=${4:?FLAGFILE}
    shift 4
    out=${OUT:?OUT must name the folder that comes back}
    bash "$0" stage > /dev/null
    if compgen -G "$wheels_dir/*.whl" > /dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site "$wheels_dir"/*.whl
      export PYTHONPATH=/tmp/site:$PWD
    else
      export PYTHONPATH=$PWD
    fi
    export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
    (nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null \
      || echo "no GPU (CPU)") > "$out/card.txt"
    root=${RLR_LEASE_ROOT:-/tmp/runs}/$name
    mkdir -p "$root"
    if [ -d "$results_dir/$name/runs" ]; then
      cp -r "$results_dir/$name/runs/." "$root/"
    fi
    status=0
    timeout --signal=TERM --kill-after=30 "$budget" \
      python3 experiments/sweep.py --flagfile="$flagfile" --root="$root" \
        --dataset="cifar10_batches:$cifar_dir" --vgg_weights=none \
        --launcher=subprocess --noplot --verbose=0 "$@" \
        > "$out/lease.log" 2>&1 || status=$?
    echo "sweep exit status: $status (124: stopped at the budget)" \
      >> "$out/lease.log"
    bash experiments/tools/records.sh pack "$root" "$out/records.tar.gz"
    tail -n 20 "$out/lease.log"
    ;;
  unpack)
    files_at=${2:?usage: gpu_lease.sh unpack FILES_AT NAME}
    name=${3:?NAME}
    mkdir -p "$results_dir/$name/runs"
    tar -xzf "$files_at/records.tar.gz" -C "$results_dir/$name/runs"
    cp "$files_at/card.txt" "$results_dir/$name/card.txt" 2>/dev/null || true
    ls "$results_dir/$name/runs"
    ;;
  *)
    sed -n '2,40p' "$0"
    exit 2
    ;;
esac
