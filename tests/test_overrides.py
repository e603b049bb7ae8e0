"""Tests of the hints for the common override mistakes: one paragraph that says what to write instead.

    python -m pytest tests/test_overrides.py
"""

import pytest

from lossbench import overrides
from lossbench.errors import UserError


HINTS = {  # name -> (overrides, what the one paragraph must say)
    "scalar for a list": (["sweep.lrs=0.5"], "sweep.lrs=0.5: sweep.lrs is a list; write sweep.lrs=[0.5]."),
    "scalar for a list of pairs": (["sweep.pairs=sigmoid_ce"], "write sweep.pairs=[sigmoid_ce]."),
    "list without brackets": (["sweep.lrs=0.5,3"], "sweep.lrs=0.5,3 gives several values; write sweep.lrs=[0.5,3] "
                                                   "for one list, or put --multirun before the overrides"),
    "lr in optim": (["optim.lr=0.5"], "optim.lr=0.5: unknown config key optim.lr; learning rates are one list for "
                                      "the whole sweep, the key sweep.lrs: write sweep.lrs=[0.5]."),
    "lr at the top": (["lr=0.5"], "unknown config key lr; learning rates are one list for the whole sweep, the key "
                                  "sweep.lrs: write sweep.lrs=[0.5]."),
    "eta in sweep": (["sweep.eta=3"], "unknown config key sweep.eta; learning rates are one list"),
    "learning_rate added": (["+optim.learning_rate=[0.1,1]"], "unknown config key optim.learning_rate (a `+` "
                                                              "override adds a key, it does not make one known); "
                                                              "learning rates are one list for the whole sweep, the "
                                                              "key sweep.lrs: write sweep.lrs=[0.1,1]."),
    "key close to a known one": (["optim.epoch=3"], "unknown config key optim.epoch; did you mean optim.epochs?"),
    "key of another node": (["seeds=3"], "unknown config key seeds; did you mean sweep.seeds?"),
    "added key close to a known one": (["+data.rot=/x"], "unknown config key data.rot (a `+` override adds a key, "
                                                         "it does not make one known); did you mean data.root?"),
    "unknown key far from all": (["colour=red"], "unknown config key colour; `python -m lossbench sweep --cfg job` "
                                                 "shows the keys there are."),
    "option close to a known one": (["model=book_h3"], "model=book_h3: the group model has no option 'book_h3'; did "
                                                       "you mean model=book_h30 or model=book_h100?"),
    "study close to a known one": (["+experiment=nielsen_ch3"], "did you mean experiment=nielsen_ch3_h30"),
    "wrong type": (["optim.epochs=abc"], "optim.epochs=abc: Value 'abc' of type 'str' could not be converted to Integer."),
    # the override named is the one that holds the bad value, not the first one given
    "wrong type in a list": (["data.train_size=200", "sweep.lrs=[fast]"], "error: sweep.lrs=[fast]: Value 'fast' of "
                                                                          "type 'str' could not be converted to Float."),
    "sizes as one word in a list": (["data.train_size=200", "model.sizes=[784-30-10]"],
                                    "error: model.sizes=[784-30-10]: Value '784-30-10' of type 'str' could not be "
                                    "converted to Integer; a list needs commas: write model.sizes=[784,30,10]."),
    "sizes as one word": (["model.sizes=784x30x10"], "model.sizes is a list; write model.sizes=[784,30,10]."),
    "lr list under another key": (["sweep.lr=[0.5]"], "unknown config key sweep.lr; learning rates are one list for "
                                                     "the whole sweep, the key sweep.lrs: write sweep.lrs=[0.5]."),
    "unreadable override": (["sweep.lrs=[0.5"], "cannot read the override sweep.lrs=[0.5: no viable alternative"),
}


@pytest.mark.parametrize("case", sorted(HINTS))
def test_a_common_mistake_gets_one_paragraph_with_a_hint_and_exit_2(run_cli, tmp_path, case):
    overrides, message = HINTS[case]
    code, stdout, stderr = run_cli("sweep", *overrides)
    assert code == 2
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr  # one paragraph
    assert message in stderr
    assert "Traceback" not in stdout + stderr and "HYDRA_FULL_ERROR" not in stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/ directory, nothing else


def test_a_hint_also_stops_the_help_and_cfg(run_cli):
    for flags in (["--help"], ["--cfg", "job"]):
        code, _, stderr = run_cli("sweep", *flags, "optim.lr=0.5")
        assert code == 2 and "write sweep.lrs=[0.5]" in stderr


def test_check_overrides_leaves_sweeps_of_values_to_a_multiruns_jobs():
    overrides.check_overrides(["sweep.lrs=[0.5],[3]", "pair=glob(*,exclude=all)", "shard.index=range(2)"], multirun=True)
    with pytest.raises(UserError, match=r"sweep.lrs=\[0.5\],\[3\] gives several values; write sweep.lrs=\[\[0.5\],\[3\]\]"):
        overrides.check_overrides(["sweep.lrs=[0.5],[3]"])
    with pytest.raises(UserError, match=r"^pair=glob\(\*\) gives several values; put --multirun before the overrides"):
        overrides.check_overrides(["pair=glob(*)"])


def test_check_overrides_passes_what_composes_and_leaves_hydra_keys_to_hydra():
    overrides.check_overrides(["sweep.lrs=[0.5]", "model=book_h100", "+experiment=nielsen_ch3_h30", "hydra.run.dir=x",
                               "hydra/launcher=lossbench_local", "optim.l2=0.1"])


@pytest.mark.parametrize("key", sorted(overrides.LEARNING_RATE_NAMES))
def test_every_learning_rate_key_points_to_sweep_lrs(key):
    for where in (key, f"optim.{key}", f"model.{key.upper()}"):
        assert overrides.key_hint(where, 0.5) == ("learning rates are one list for the whole sweep, the key sweep.lrs: "
                                               "write sweep.lrs=[0.5].")


@pytest.mark.parametrize("key,close", [("optim.epoch", "optim.epochs"), ("epochs", "optim.epochs"),
                                       ("sweep.seed", "sweep.seeds"), ("data.rot", "data.root"),
                                       ("devices", "device"), ("modl", "model"), ("ensemble_sise", "sweep.ensemble_size")])
def test_a_key_close_to_a_known_one_gets_did_you_mean(key, close):
    assert overrides.key_hint(key, 1) == f"did you mean {close}?"
