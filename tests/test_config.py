"""Tests of the sweep's config: every group option and study composes, the schema and validate() reject bad input.

    python -m pytest tests/test_config.py
"""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from lossbench import config, grid
from lossbench.choices import Init
from lossbench.config import CONF_DIR, EXPERIMENTS_DIR
from lossbench.errors import UserError
from lossbench.pairs import PAIRS

GROUPS = ["data", "model", "optim", "sweep", "pair"]


@pytest.fixture
def composer():
    """compose(*overrides): conf/config.yaml as the sweep composes it (config.compose_config)."""
    return lambda *overrides: config.compose_config(list(overrides))


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def test_default_is_the_160_run_comparison(composer):
    cfg = composer()
    config.validate(cfg)
    assert list(cfg.sweep.pairs) == list(PAIRS)
    assert list(cfg.sweep.lrs) == [0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 3.0, 10.0]
    assert grid.seed_list(cfg.sweep.seeds) == [0, 1, 2, 3, 4]
    assert len(cfg.sweep.pairs) * len(cfg.sweep.lrs) * len(grid.seed_list(cfg.sweep.seeds)) == 160
    assert list(cfg.model.sizes) == [784, 30, 10] and cfg.model.init == Init.large
    assert (cfg.optim.epochs, cfg.optim.batch_size, cfg.optim.l2) == (30, 10, 0.0)
    assert (cfg.data.name, cfg.data.root, cfg.data.train_size, cfg.data.val_size) == ("mnist", None, None, 10000)
    assert (cfg.device, cfg.dtype) == (config.Device.auto, config.DType.float32)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_validates(composer, group, option):
    cfg = composer(f"{group}={option}")
    config.validate(cfg)


def test_hydra_settings():
    cfg = config.compose_config(hydra=True).hydra
    assert cfg.job.name == "sweep" and cfg.job.chdir is False
    assert cfg.run.dir.startswith("outputs/sweep/")
    assert cfg.output_subdir is None  # the sweep writes config.yaml itself, atomically


def test_each_pair_option_selects_its_pair(composer):
    assert set(options("pair")) == set(PAIRS) | {"all"}
    for name in PAIRS:
        assert list(composer(f"pair={name}").sweep.pairs) == [name]
    # a pair option sets sweep.pairs; a command-line value still wins
    assert list(composer("pair=sigmoid_mse", "sweep.pairs=[linear_mse]").sweep.pairs) == ["linear_mse"]


BOOK = {  # study -> (pair, eta, sizes, book's test accuracy)
    "nielsen_ch1_h30": ("sigmoid_mse", 3.0, [784, 30, 10], 0.9542),
    "nielsen_ch1_h100": ("sigmoid_mse", 3.0, [784, 100, 10], 0.9659),
    "nielsen_ch3_h30": ("sigmoid_ce", 0.5, [784, 30, 10], 0.9549),
    "nielsen_ch3_h100": ("sigmoid_ce", 0.5, [784, 100, 10], 0.9682),
}


@pytest.mark.parametrize("name", sorted(config.sweep_studies()))
def test_every_sweep_study_composes_and_validates(composer, name):
    cfg = composer(f"+experiment={name}")
    config.validate(cfg)
    assert cfg.study.name == name
    assert all(0 < acc < 1 for acc in cfg.study.book_test_acc)  # fractions, like the CSVs


@pytest.mark.parametrize("name", sorted(BOOK))
def test_book_studies_state_the_books_setting(composer, name):
    pair, eta, sizes, book = BOOK[name]
    cfg = composer(f"+experiment={name}")
    assert (list(cfg.sweep.pairs), list(cfg.sweep.lrs), list(cfg.model.sizes)) == ([pair], [eta], sizes)
    assert (cfg.model.init, cfg.optim.epochs, cfg.optim.batch_size, cfg.optim.l2) == (Init.large, 30, 10, 0.0)
    assert grid.seed_list(cfg.sweep.seeds) == list(range(20))
    assert list(cfg.study.book_test_acc) == [book] and cfg.study.chapter == int(name[len("nielsen_ch")])
    # the user can still override a study's values
    assert grid.seed_list(composer(f"+experiment={name}", "sweep.seeds=100").sweep.seeds) == list(range(100))


def test_studies_of_other_commands_are_not_sweep_options(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("# @package _global_\ncommand: sweep\nsweep:\n  seeds: 3\n")
    (tmp_path / "toy.yaml").write_text("command: study\ninput: 1.0\n")
    (tmp_path / "plain.yaml").write_text("sweep:\n  seeds: 2\n")
    monkeypatch.setattr(config, "EXPERIMENTS_DIR", tmp_path)
    studies = config.sweep_studies()
    assert sorted(studies) == ["mine", "plain"]
    assert "command" not in studies["mine"]  # the schema has no such key


def test_unreadable_study_is_a_user_error(tmp_path, monkeypatch):
    (tmp_path / "broken.yaml").write_text("sweep: [unclosed\n")
    monkeypatch.setattr(config, "EXPERIMENTS_DIR", tmp_path)
    with pytest.raises(UserError, match="broken.yaml"):
        config.sweep_studies()


def test_real_experiments_dir_holds_the_four_book_studies():
    assert set(BOOK) <= set(config.sweep_studies())
    clone = Path(__file__).resolve().parents[1] / "experiments"  # the package's studies are the clone's, all of them
    assert sorted(path.name for path in EXPERIMENTS_DIR.glob("*.yaml")) == sorted(path.name for path in clone.glob("*.yaml"))


@pytest.mark.parametrize("override,message", [
    ("model.init=huge", "expected one of [large, default]"),
    ("dtype=float16", "expected one of [float32, float64]"),
    ("device=tpu", "expected one of [auto, cpu, cuda]"),
    ("engine=fast", "expected one of [auto, triton, graphs, eager, c]"),
    ("optim.epochs=abc", "could not be converted to Integer"),
    ("sweep.lrs=[fast]", "could not be converted to Float"),
    ("optim.epoch=3", "Key 'epoch' not in 'OptimConfig'"),
])
def test_schema_rejects_at_composition(composer, override, message):
    with pytest.raises(ConfigCompositionException) as err:
        composer(override)
    assert message in f"{err.value} {err.value.__cause__}"


@pytest.mark.parametrize("overrides,message", [
    (["sweep.pairs=[sigmoid_mse,softmax]"], "unknown pair 'softmax' in sweep.pairs; the pairs are: sigmoid_mse, sigmoid_ce"),
    (["sweep.pairs=[]"], "sweep.pairs is empty"),
    (["sweep.pairs=[sigmoid_ce,sigmoid_ce]"], "lists 'sigmoid_ce' twice"),
    (["sweep.lrs=[0.5,-1]"], "learning rate -1.0 in sweep.lrs is not a finite positive number"),
    (["sweep.lrs=[0]"], "learning rate 0.0 in sweep.lrs"),
    (["sweep.lrs=[nan]"], "learning rate nan in sweep.lrs"),
    (["sweep.lrs=[inf]"], "learning rate inf in sweep.lrs"),
    (["sweep.lrs=[]"], "sweep.lrs is empty"),
    (["sweep.lrs=[0.1234567,0.1234568]"], "to 6 significant digits"),
    (["sweep.seeds=0"], "sweep.seeds=0 asks for no runs"),
    (["sweep.seeds=-3"], "sweep.seeds=-3 asks for no runs"),
    (["sweep.seeds=[]"], "neither a count >= 1 nor a non-empty list"),
    (["sweep.seeds=[1,-1]"], "neither a count >= 1 nor a non-empty list"),
    (["sweep.seeds=three"], "sweep.seeds=three is neither"),
    (["sweep.seeds=[2,2]"], "lists 2 twice"),
    (["optim.batch_size=0"], "optim.batch_size=0"),
    (["optim.epochs=0"], "optim.epochs=0"),
    (["optim.l2=-1"], "optim.l2=-1.0"),
    (["model.sizes=[784]"], "needs at least 2 layer sizes"),
    (["model.sizes=[784,0,10]"], "has a layer of width 0"),
    (["+optim.epoch=3"], "unknown config key optim.epoch"),
    (["+colour=red"], "unknown config key colour"),
    (["engine=graphs", "device=cpu"], "engine=graphs replays CUDA graphs, but the device is cpu"),
])
def test_validate_names_the_bad_value(composer, overrides, message):
    with pytest.raises(UserError) as err:
        config.validate(composer(*overrides))
    assert message in str(err.value)


def test_validate_against_data(composer):
    cfg = composer("optim.batch_size=50")
    config.validate_against_data(cfg, n_inputs=784, n_classes=10, n_train=50)
    with pytest.raises(UserError, match=r"larger than the training set \(49 examples\); use 1..49"):
        config.validate_against_data(cfg, n_inputs=784, n_classes=10, n_train=49)
    for sizes in ("[784,30,9]", "[783,30,10]"):
        with pytest.raises(UserError, match=r"does not fit mnist: .* 784 inputs .* 10 classes"):
            config.validate_against_data(composer(f"model.sizes={sizes}"), 784, 10, 50000)
