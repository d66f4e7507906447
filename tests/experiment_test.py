"""rlr_keras.experiment on the user's own model and data (every backend).

Own models from a file spec, a module spec and a callable; own data as
float features, an npz file, a loader function and arrays; the Python-API
sweep and report; every bad input refused in one line before a run folder
is touched; the experiments/ script and the console script writing the same
run folder.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from absl import flags

from rlr_keras import experiment
from rlr_keras.data import ImageDataset
from rlr_keras.experiment import _rundir
from rlr_keras.experiment.commands import sweep as sweep_command
from rlr_keras.experiment.commands import train as train_command
from _helpers import REPO

_FAST = dict(protocol="random", learning_rate=0.05, batch_size=32, epochs=2,
             seed=1, deterministic=True, verbose=0, evaluate_train=False)
_ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                    PYTHONPATH=REPO)

# The user's own code, as a user would write it: a file of model builders
# and data loaders.
_USER_MODULE = textwrap.dedent('''
    import keras
    import numpy as np


    def small_net(input_shape, num_classes, seed=None):
        inputs = keras.Input(input_shape)
        x = keras.layers.Flatten()(inputs)
        x = keras.layers.Dense(
            16, activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed))(x)
        outputs = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.GlorotUniform(seed))(x)
        return keras.Model(inputs, outputs)


    def no_seed_net(input_shape, num_classes):
        inputs = keras.Input(input_shape)
        x = keras.layers.Flatten()(inputs)
        return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


    def not_a_model(input_shape, num_classes):
        return "a string"


    def three_logits(input_shape, num_classes):
        inputs = keras.Input(input_shape)
        x = keras.layers.Flatten()(inputs)
        return keras.Model(inputs, keras.layers.Dense(3)(x))


    def features():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(120, 6)).astype("float32")
        y = (x[:, 0] + x[:, 1] > 0).astype("int64")
        return (x[:96], y[:96]), (x[96:], y[96:])


    NOT_CALLABLE = 3
''')


def _features(n=120, width=6, seed=0):
    """A non-image float dataset: tabular rows, two classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    split = n * 4 // 5
    return (x[:split], y[:split]), (x[split:], y[split:])


@pytest.fixture(scope="module")
def user_code(tmp_path_factory):
    """The user's module as a file and as an importable module."""
    folder = tmp_path_factory.mktemp("user_code")
    path = folder / "my_models.py"
    path.write_text(_USER_MODULE)
    package = folder / "userpkg_rlr_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(_USER_MODULE)
    sys.path.insert(0, str(folder))
    try:
        yield str(path), "userpkg_rlr_test.nets"
    finally:
        sys.path.remove(str(folder))


def _metrics(run_dir):
    return [{k: v for k, v in row.items() if k != "wall_time_s"}
            for row in _rundir.read_jsonl(
                os.path.join(run_dir, _rundir.METRICS_FILE))]


@pytest.mark.slow
def test_own_model_from_a_file_spec(tmp_path, user_code):
    path, _ = user_code
    run_dir = str(tmp_path / "run")
    summary = experiment.train(output_dir=run_dir,
                               model=f"{path}:small_net", dataset="digits",
                               **_FAST)
    assert _rundir.read_status(run_dir) == _rundir.DONE
    assert summary["num_parameters"] == 64 * 16 + 16 + 16 * 10 + 10
    config = _rundir.read_json(os.path.join(run_dir, "config.json"))
    assert config["arguments"]["model"] == f"{path}:small_net"
    flags_text = open(os.path.join(run_dir, "flags.cfg")).read()
    assert f"--model={path}:small_net" in flags_text
    assert "rlr-train --flagfile=THIS_FILE" in flags_text


@pytest.mark.slow
def test_own_model_from_a_module_spec_gets_the_seed(tmp_path, user_code):
    _, module = user_code
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run_dir = str(tmp_path / name)
        experiment.train(output_dir=run_dir, model=f"{module}:small_net",
                         dataset="digits", **dict(_FAST, seed=seed,
                                                  epochs=1))
        runs[name] = _metrics(run_dir)
    assert runs["a"] == runs["b"]  # The seed reached the initializers.
    assert runs["a"] != runs["c"]


def test_own_model_without_a_seed_keyword(tmp_path, user_code):
    path, _ = user_code
    run_dir = str(tmp_path / "run")
    experiment.train(output_dir=run_dir, model=f"{path}:no_seed_net",
                     dataset="digits", **dict(_FAST, epochs=1))
    assert _rundir.read_status(run_dir) == _rundir.DONE


def test_non_image_float_dataset_passes_unchanged(tmp_path, user_code):
    path, _ = user_code
    (x, y), (xt, yt) = _features()
    run_dir = str(tmp_path / "run")
    summary = experiment.train(output_dir=run_dir,
                               model=f"{path}:small_net",
                               dataset=((x, y), (xt, yt)), **_FAST)
    assert summary["num_parameters"] == 6 * 16 + 16 + 16 * 2 + 2
    # The features are used as they are (not divided by 255): the same
    # data from a loader function gives the same run, bit for bit.
    other = str(tmp_path / "from_function")
    experiment.train(output_dir=other, model=f"{path}:small_net",
                     dataset=f"{path}:features", **_FAST)
    assert _metrics(run_dir) == _metrics(other)
    from rlr_keras import data  # pylint: disable=import-outside-toplevel
    batch = data.eval_pipeline(x, y, batch_size=8)[0][0]
    np.testing.assert_array_equal(batch, x[:8])


def test_npz_dataset(tmp_path, user_code):
    path, _ = user_code
    (x, y), (xt, yt) = _features()
    npz = tmp_path / "data.npz"
    np.savez(npz, x_train=x, y_train=y, x_test=xt, y_test=yt)
    run_dir = str(tmp_path / "run")
    experiment.train(output_dir=run_dir, model=f"{path}:small_net",
                     dataset=f"npz:{npz}", **_FAST)
    arrays = str(tmp_path / "arrays")
    experiment.train(output_dir=arrays, model=f"{path}:small_net",
                     dataset=((x, y), (xt, yt)), **_FAST)
    assert _metrics(run_dir) == _metrics(arrays)
    config = _rundir.read_json(os.path.join(run_dir, "config.json"))
    assert config["arguments"]["dataset"] == f"npz:{npz}"


def test_uint8_images_are_scaled_like_the_builtin_formats(tmp_path):
    from rlr_keras import data  # pylint: disable=import-outside-toplevel
    digits = data.load_dataset("digits")
    arrays = ((digits.train_images, digits.train_labels),
              (digits.test_images, digits.test_labels))
    runs = {}
    for name, dataset in (("spec", "digits"), ("arrays", arrays)):
        runs[name] = str(tmp_path / name)
        experiment.train(output_dir=runs[name], model="mlp", dataset=dataset,
                         **dict(_FAST, epochs=1))
    assert _metrics(runs["spec"]) == _metrics(runs["arrays"])


def test_python_api_sweep_with_a_callable_and_arrays_then_report(tmp_path):
    def tiny(input_shape, num_classes, seed=None):
        inputs = keras.Input(input_shape)
        outputs = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.GlorotUniform(seed))(inputs)
        return keras.Model(inputs, outputs)

    root = str(tmp_path / "sweep")
    result = experiment.sweep(
        root, model=tiny, dataset=_features(), protocols=["constant",
                                                          "random"],
        seeds=[0], epochs=2, learning_rate=0.05, batch_size=32, verbose=0,
        plot=False)
    assert sorted(result["done"]) == ["constant_seed=0", "random_seed=0"]
    assert result["failed"] == {}
    paths = experiment.report(root)
    assert os.path.isfile(os.path.join(root, "plots", "table.md"))
    assert paths["table_md"] == os.path.join(root, "plots", "table.md")
    table = open(paths["table_md"]).read()
    assert "constant" in table and "random" in table
    # Recorded by name, and said not to replay from the command line.
    run_dir = os.path.join(root, "random_seed=0")
    config = _rundir.read_json(os.path.join(run_dir, "config.json"))
    model = config["arguments"]["model"]
    assert model.startswith("callable:") and model.endswith(".tiny")
    assert config["arguments"]["dataset"].startswith("arrays:")
    assert "cannot be replayed from the" in open(
        os.path.join(run_dir, "flags.cfg")).read()
    spec = json.load(open(os.path.join(root, "sweep.json")))
    assert spec["base_arguments"]["model"] == model
    # A second sweep with the same objects skips both runs; other arrays
    # are another dataset, refused in the existing folders.
    again = experiment.sweep(
        root, model=tiny, dataset=_features(), protocols=["constant",
                                                          "random"],
        seeds=[0], epochs=2, learning_rate=0.05, batch_size=32, verbose=0,
        plot=False)
    assert sorted(again["skipped"]) == sorted(result["done"])
    with pytest.raises(ValueError, match="other arguments.*dataset"):
        experiment.train(output_dir=run_dir, model=tiny,
                         dataset=_features(seed=1), protocol="random",
                         epochs=2, learning_rate=0.05, batch_size=32,
                         seed=0, verbose=0)


def test_callable_sweep_refuses_the_subprocess_launcher(tmp_path):
    root = str(tmp_path / "sweep")
    with pytest.raises(ValueError, match="launcher='subprocess'.*model="):
        experiment.sweep(root, model=lambda s, n: None, dataset="digits",
                         protocols=["constant"], seeds=[0],
                         launcher="subprocess")
    assert not os.path.exists(root)


def _bad_inputs(path):
    (x, y), (xt, yt) = _features()
    return {
        "unknown module": (dict(model="no_such_module_rlr:f"),
                           ValueError, "cannot import module"),
        "unknown file": (dict(model="/no/such/file.py:f"), ValueError,
                         "no such file"),
        "unknown function": (dict(model=f"{path}:missing"), ValueError,
                             "has no 'missing'"),
        "not callable": (dict(model=f"{path}:NOT_CALLABLE"), TypeError,
                         "not a function"),
        "not a Model": (dict(model=f"{path}:not_a_model"), TypeError,
                        "must return a keras.Model"),
        "wrong logits": (dict(model=f"{path}:three_logits"), ValueError,
                         "must output 10 logits"),
        "unknown dataset function": (dict(dataset=f"{path}:missing"),
                                     ValueError, "has no 'missing'"),
        "lengths differ": (dict(dataset=((x, y[:-1]), (xt, yt))),
                           ValueError, "holds 96 examples but y_train"),
        "non-integer labels": (dict(dataset=((x, y + 0.5), (xt, yt))),
                               ValueError, "integer labels"),
        "string labels": (dict(dataset=((x, y.astype(str)), (xt, yt))),
                          TypeError, "integer labels"),
        "label out of range": (
            dict(dataset=ImageDataset("mine", x, np.where(y, 7, 0), xt, yt,
                                      num_classes=2)),
            ValueError, r"has label 7 at index \d+ .* \[0, 1\]"),
        "negative label": (dict(dataset=((x, y - 1), (xt, yt))), ValueError,
                           "has label -1"),
        "nan features": (dict(dataset=((np.where(x > 2, np.nan, x), y),
                                       (xt, yt))), ValueError, "NaN"),
        "inf features": (dict(dataset=((x, y), (xt * np.inf, yt))),
                         ValueError, "infinite"),
        "empty split": (dict(dataset=((x, y), (xt[:0], yt[:0]))),
                        ValueError, "test split is empty"),
        "int64 features": (dict(dataset=((x.astype(np.int64), y),
                                         (xt.astype(np.int64), yt))),
                           TypeError, "uint8 images .* or float"),
    }


@pytest.mark.parametrize("case", [
    "unknown module", "unknown file", "unknown function", "not callable",
    "not a Model", "wrong logits", "unknown dataset function",
    "lengths differ", "non-integer labels", "string labels",
    "label out of range", "negative label", "nan features", "inf features", "empty split",
    "int64 features"])
def test_bad_input_is_refused_before_the_folder(tmp_path, user_code, case):
    path, _ = user_code
    arguments, error, message = _bad_inputs(path)[case]
    arguments = dict(dict(model="mlp", dataset="digits"), **arguments)
    if arguments["dataset"] != "digits" and arguments["model"] == "mlp":
        arguments["model"] = f"{path}:small_net"
    run_dir = str(tmp_path / "run")
    with pytest.raises(error, match=message) as raised:
        experiment.train(output_dir=run_dir, **arguments, **_FAST)
    assert "\n" not in str(raised.value)
    assert not os.path.exists(run_dir)
    root = str(tmp_path / "sweep")
    with pytest.raises(error, match=message):
        experiment.sweep(root, protocols=["constant"], seeds=[0],
                         plot=False, **arguments, epochs=1, verbose=0)
    assert not os.path.exists(root)


def test_label_out_of_range_of_the_model(tmp_path, user_code):
    # The model says 10 classes through num_classes; labels say 2: the data
    # decides num_classes (1 + the largest label), the model must follow.
    path, _ = user_code
    (x, y), (xt, yt) = _features()
    y = y.copy()
    y[5] = 7
    run_dir = str(tmp_path / "run")
    summary = experiment.train(output_dir=run_dir, model=f"{path}:small_net",
                               dataset=((x, y), (xt, yt)), **_FAST)
    assert summary["num_parameters"] == 6 * 16 + 16 + 16 * 8 + 8


@pytest.fixture
def parsed_flags():
    def parse(argv):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(argv)
    yield parse
    flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("flag, message", [
    ("--model=no_such_module_rlr:f",
     "--model='no_such_module_rlr:f': cannot import module"),
    ("--dataset=npz:/no/such.npz", "dataset 'npz:/no/such.npz': no such"),
    ("--model=callable:__main__.tiny", "cannot be loaded from its recorded"),
])
def test_cli_bad_spec_is_one_line_exit_2(tmp_path, capsys, parsed_flags,
                                         flag, message):
    run_dir = str(tmp_path / "run")
    parsed_flags(["train.py", flag, "--epochs=1", "--verbose=0",
                  f"--output_dir={run_dir}"])
    assert train_command.main(["train.py"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("train.py: error: ")
    assert message in err
    assert not os.path.exists(run_dir)


def test_cli_sweep_bad_model_is_one_line_exit_2(tmp_path, capsys,
                                                parsed_flags, user_code):
    path, _ = user_code
    root = str(tmp_path / "sweep")
    parsed_flags(["sweep.py", f"--model={path}:three_logits",
                  "--protocols=constant", "--seeds=0", f"--root={root}"])
    with pytest.raises(SystemExit) as raised:
        sweep_command.main(["sweep.py"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must output 10 logits" in err
    assert not os.path.exists(root)


def _run_command(command, run_dir, user_file):
    completed = subprocess.run(
        command + [f"--model={user_file}:small_net", "--dataset=digits",
                   "--protocol=random", "--epochs=2", "--batch_size=64",
                   "--deterministic", "--verbose=0",
                   f"--output_dir={run_dir}"],
        capture_output=True, text=True, env=_ENVIRONMENT, cwd=REPO,
        timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.mark.backend_independent
@pytest.mark.slow
def test_script_and_console_script_make_identical_run_folders(tmp_path,
                                                              user_code):
    path, _ = user_code
    console = shutil.which("rlr-train",
                           path=os.path.dirname(sys.executable))
    if console is None:
        pytest.skip("rlr-train is not installed (pip install -e .)")
    folders = {"script": str(tmp_path / "script"),
               "console": str(tmp_path / "console")}
    _run_command([sys.executable, os.path.join(REPO, "experiments",
                                               "train.py")],
                 folders["script"], path)
    _run_command([console], folders["console"], path)

    def described(folder):
        config = _rundir.read_json(os.path.join(folder, "config.json"))
        config["arguments"].pop("output_dir")
        flag_lines = [line for line in open(os.path.join(folder,
                                                         "flags.cfg"))
                      if not line.startswith("--output_dir=")]
        summary = _rundir.read_json(os.path.join(folder, "summary.json"))
        summary.pop("wall_time_s")
        return (config["arguments"], config["optimizer"], flag_lines,
                _metrics(folder), summary, sorted(os.listdir(folder)))

    assert described(folders["script"]) == described(folders["console"])
