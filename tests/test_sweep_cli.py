"""Tests of the sweep command's front: bad input is one paragraph and exit status 2, and leaves no directory behind.

    python -m pytest tests/test_sweep_cli.py

Some cases reach the data: the file needs MNIST (LOSSBENCH_DATA), as test_sweep.py does.
"""

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.mnist
TINY = ["sweep.pairs=[sigmoid_ce]", "sweep.lrs=[0.5]", "sweep.seeds=1", "optim.epochs=1",
        "data.train_size=100", "data.val_size=500"]


def corrupt_mnist(directory: Path) -> Path:
    source = Path(os.environ["LOSSBENCH_DATA"])
    directory.mkdir()
    for path in source.glob("*-ubyte.gz"):
        data = path.read_bytes()
        (directory / path.name).write_bytes(data[: len(data) // 2] if "train-images" in path.name else data)
    return directory


BAD_INPUT = {  # name -> (overrides, what the message must say)
    "unknown pair": (["sweep.pairs=[sigmoid]"], "unknown pair 'sigmoid' in sweep.pairs; the pairs are: sigmoid_mse, sigmoid_ce, softmax_nll, linear_mse"),
    "unknown pair option": (["pair=sigmoid"], "pair=sigmoid: the group pair has no option 'sigmoid'; did you mean "
                                              "pair=sigmoid_ce or pair=sigmoid_mse? its options: all, linear_mse"),
    "negative lr": (["sweep.lrs=[-0.5]"], "learning rate -0.5 in sweep.lrs is not a finite positive number"),
    "infinite lr": (["sweep.lrs=[inf]"], "learning rate inf in sweep.lrs is not a finite positive number"),
    "lr not a number": (["sweep.lrs=[fast]"], "error: sweep.lrs=[fast]: Value 'fast' of type 'str' could not be "
                                              "converted to Float"),
    "no seeds": (["sweep.seeds=0"], "sweep.seeds=0 asks for no runs"),
    "zero batch": (["optim.batch_size=0"], "optim.batch_size=0"),
    "batch above training set": (["optim.batch_size=101"], "optim.batch_size=101 is larger than the training set (100 examples)"),
    "sizes off the data": (["model.sizes=[784,30,9]"], "model.sizes=[784, 30, 9] does not fit mnist"),
    "one size": (["model.sizes=[784]"], "model.sizes=[784] needs at least 2 layer sizes"),
    "zero width": (["model.sizes=[784,0,10]"], "has a layer of width 0"),
    "unknown init": (["model.init=huge"], "Invalid value 'huge', expected one of [large, default]"),
    "unknown key": (["optim.epoch=3"], "optim.epoch=3: unknown config key optim.epoch; did you mean optim.epochs?"),
    "missing data": (["data.root={tmp}/nothing"], "{tmp}/nothing"),
    "corrupt data": (["data.root={corrupt}"], "train-images-idx3-ubyte.gz: truncated or corrupt gzip file"),
    "unwritable output": (["hydra.run.dir={tmp}/a_file/sweep"], "cannot write the output directory {tmp}/a_file/sweep"),
    "shard out of range": (["shard.count=2", "shard.index=2"], "shard.index=2 with shard.count=2: the index must be in 0..count-1"),
    "more shards than seeds": (["shard.count=2"], "shard.count=2 is more than the 1 seeds in sweep.seeds"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_message_and_exit_2(tmp_path, run_cli, case):
    overrides, message = BAD_INPUT[case]
    (tmp_path / "a_file").write_text("not a directory")
    names = {"tmp": tmp_path, "corrupt": corrupt_mnist(tmp_path / "corrupt") if case == "corrupt data" else None}
    out = tmp_path / "outputs" / "sweep" / "out"
    args = [*TINY, f"hydra.run.dir={out}", *(o.format(**names) for o in overrides)]
    code, stdout, stderr = run_cli("sweep", *args)
    assert code == 2
    assert message.format(**names) in stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1  # one paragraph
    assert "Traceback" not in stderr + stdout
    assert not (tmp_path / "outputs").exists()  # nothing written, not even an empty directory or its parents


def test_bad_input_into_the_default_directory_leaves_no_outputs_folder(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default hydra.run.dir is outputs/sweep/<date>_<time> here
    code, _, stderr = run_cli("sweep", *TINY, "data.root=nothing")
    assert code == 2 and f"MNIST data directory {tmp_path / 'nothing'} (data.root) does not exist" in stderr
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_into_an_existing_parent_removes_only_what_it_created(tmp_path, run_cli):
    (tmp_path / "outputs").mkdir()
    code, _, _ = run_cli("sweep", *TINY, "sweep.lrs=[-1]", f"hydra.run.dir={tmp_path}/outputs/sweep/a")
    assert code == 2 and [path.name for path in tmp_path.iterdir()] == ["outputs"]
    assert list((tmp_path / "outputs").iterdir()) == []
