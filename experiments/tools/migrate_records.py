"""Brings committed run records up to today's train.py, so they replay.

A run record (docs/results/<figure>/runs/<run>/) holds `flags.cfg`, whose
header says to replay the run with

    python experiments/train.py --flagfile=THIS_FILE     (repository root)

and `config.json`, whose `arguments` are the same values as JSON (plot.py
groups runs by them). Two things in records made before issue 22 stopped a
replay at HEAD; this script rewrites both files consistently:

1. `--delta` on a constant or cyclic run. The code that made these runs
   (commit 7973a20) passed delta to the random protocol only and ignored it
   otherwise; today's train.py refuses it (a random factor is the random
   protocol). The flag line is dropped and `arguments.delta` becomes null,
   which is what sweep.py writes for these protocols today. No training
   arithmetic changes.
2. A dataset path on the machine that made the run
   (`idx-split:/work/shared/data/mnist-t10k`). It becomes a path relative to
   the repository root, `idx-split:../shared/data/mnist-t10k` (the shared
   data folder beside the checkout). To use another copy of the data, give
   the flag after the flagfile: `--flagfile=.../flags.cfg
   --dataset=idx-split:/your/mnist-t10k` (absl: the last value wins).
   Paths of installed Debian datasets (`/usr/share/datasets/...`,
   `apt-get install dataset-fashion-mnist`) are the package's own location
   and stay.

3. `--weight_decay` (issue 24). It was the coupled L2 term, added to the
   gradient, which the library calls `coupled_weight_decay`; Keras'
   `weight_decay` is the decoupled one. rlr_keras 0.2.0 renamed the flag to
   `--coupled_weight_decay` and refuses `--weight_decay`: the flag line and
   `arguments.weight_decay` take the new name, with the same value. No
   training arithmetic changes (train.py also reads the old name in a run's
   config.json when it resumes a run recorded before the rename).

Each migrated flags.cfg gets one header line per issue saying so. Running the script
again changes nothing (it is idempotent), and `--check` only reports.

    python experiments/tools/migrate_records.py docs/results
    python experiments/tools/migrate_records.py --check docs/results
"""

import argparse
import json
import os
import sys

# Machine paths of the shared data folder -> the same folder relative to the
# repository root (/work/<checkout> and /work/shared are siblings).
PATH_PREFIXES = {"/work/shared/": "../shared/"}
RANDOM_ONLY = ("delta",)
# Arguments renamed since the records were made: old name -> new name.
RENAMED = {"weight_decay": "coupled_weight_decay"}
MARK = "# Migrated by experiments/tools/migrate_records.py (issue 22): "
MARK_RENAMED = ("# Migrated by experiments/tools/migrate_records.py "
                "(issue 24): ")


def migrate_dataset(value):
    """Returns the dataset spec with a machine path made repo-relative."""
    if not isinstance(value, str) or ":" not in value:
        return value
    kind, path = value.split(":", 1)
    for old, new in PATH_PREFIXES.items():
        if path.startswith(old):
            return f"{kind}:{new}{path[len(old):]}"
    return value


def migrate_arguments(arguments):
    """Returns (new arguments, list of changes) for a config's arguments."""
    new = dict(arguments)
    changes = []
    if new.get("protocol") != "random":
        for name in RANDOM_ONLY:
            if new.get(name) is not None:
                changes.append(f"dropped --{name}={new[name]!r} "
                               f"(not used by the {new.get('protocol')} "
                               "protocol)")
                new[name] = None
    dataset = migrate_dataset(new.get("dataset"))
    if dataset != new.get("dataset"):
        changes.append(f"--dataset={new['dataset']} -> --dataset={dataset} "
                       "(relative to the repository root)")
        new["dataset"] = dataset
    return new, changes


def rename_arguments(arguments):
    """Returns (new arguments, list of renames) for a config's arguments."""
    new = dict(arguments)
    renames = []
    for old, name in RENAMED.items():
        if old in new and name not in new:
            new[name] = new.pop(old)
            renames.append(f"--{old} -> --{name} (renamed in rlr_keras "
                           "0.2.0, same coupled L2 term and value)")
    return new, renames


def migrate_flag_lines(lines, arguments):
    """Rewrites flags.cfg lines to match the migrated arguments."""
    out = []
    for line in lines:
        name = line[2:].split("=", 1)[0] if line.startswith("--") else None
        if name in RANDOM_ONLY and arguments.get(name) is None:
            continue
        if name == "dataset":
            line = f"--dataset={arguments['dataset']}"
        if name in RENAMED and RENAMED[name] in arguments:
            line = f"--{RENAMED[name]}={line.split('=', 1)[1]}"
        out.append(line)
    return out


def _write(path, text):
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def _dump(config):
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def migrate_run(folder, *, check=False):
    """Migrates one run folder; returns the list of changes (empty: none)."""
    config_path = os.path.join(folder, "config.json")
    flags_path = os.path.join(folder, "flags.cfg")
    with open(config_path) as f:
        text = f.read()
    config = json.loads(text)
    if _dump(config) != text:
        raise ValueError(f"{config_path}: not in the json.dumps(indent=2, "
                         "sort_keys=True) layout this script writes back")
    arguments, changes = migrate_arguments(config["arguments"])
    arguments, renames = rename_arguments(arguments)
    with open(flags_path) as f:
        lines = f.read().splitlines()
    new_lines = migrate_flag_lines(lines, arguments)
    if new_lines == lines and not changes and not renames:
        return []
    if not renames:
        changes = changes or ["flags.cfg brought in line with config.json"]
    if check:
        return changes + renames
    header = [line for line in new_lines if line.startswith("#")]
    body = [line for line in new_lines if not line.startswith("#")]
    for mark, done in ((MARK, changes), (MARK_RENAMED, renames)):
        if done and not any(line.startswith(mark) for line in header):
            header.append(mark + "; ".join(done) + ".")
    config["arguments"] = arguments
    _write(config_path, _dump(config))
    _write(flags_path, "\n".join(header + body) + "\n")
    return changes + renames


def run_folders(roots):
    """Yields every folder below `roots` that holds config.json and
    flags.cfg, sorted."""
    for root in roots:
        for directory, _, files in sorted(os.walk(root)):
            if "config.json" in files and "flags.cfg" in files:
                yield directory


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+",
                        help="folders searched for run records")
    parser.add_argument("--check", action="store_true",
                        help="report what would change, change nothing; "
                             "exit status 1 if anything would")
    args = parser.parse_args(argv)
    count = pending = 0
    for folder in sorted(run_folders(args.roots)):
        count += 1
        changes = migrate_run(folder, check=args.check)
        if changes:
            pending += 1
            print(f"{folder}: {'; '.join(changes)}")
    verb = "need migration" if args.check else "migrated"
    print(f"{count} records, {pending} {verb}")
    return 1 if args.check and pending else 0


if __name__ == "__main__":
    sys.exit(main())
