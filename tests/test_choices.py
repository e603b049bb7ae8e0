"""Tests of the shared choices: every initialization and engine composes in the config and the trainer takes it.

    python -m pytest tests/test_choices.py
"""

import math

import pytest

from lossbench import config
from lossbench.choices import Engine, Init
from lossbench.ensemble import TrainConfig, choose_engine, init_params
from lossbench.errors import UserError


@pytest.mark.parametrize("init", list(Init))
def test_every_init_composes_and_draws_its_scale(init):
    assert config.compose_config([f"model.init={init.value}"]).model.init is init
    w, _ = init_params(0, (400, 3), init.value)[0]
    expected = 1.0 if init is Init.large else 1 / math.sqrt(400)  # ch. 1's N(0, 1), ch. 3's N(0, 1/n_in)
    assert w.std().item() == pytest.approx(expected, rel=0.05)


def test_an_unknown_init_is_refused_by_the_trainer():
    with pytest.raises(ValueError, match="'huge' is not a valid Init"):
        init_params(0, (4, 3), "huge")


@pytest.mark.parametrize("engine", list(Engine))
def test_every_engine_composes_and_the_trainer_knows_it(engine):
    assert config.compose_config([f"engine={engine.value}"]).engine is engine
    cfg = TrainConfig(sizes=(784, 4, 10), device="cpu", engine=engine.value)
    try:
        chosen = choose_engine(cfg, ["sigmoid_ce"])
    except UserError as err:  # a CUDA engine on the CPU says why it cannot run here, never that it is unknown
        assert engine in (Engine.graphs, Engine.triton) and "is not an engine" not in str(err)
    else:  # triton runs on the CPU under TRITON_INTERPRET=1 (tests/test_triton_train.py sets it)
        assert chosen == ("c" if engine is Engine.auto else engine.value)  # auto: c on the CPU for one hidden layer


def test_an_unknown_engine_lists_the_choices():
    with pytest.raises(UserError, match="engine='fast' is not an engine; choose one of: auto, triton, graphs, eager"):
        choose_engine(TrainConfig(sizes=(4, 3), engine="fast"), ["sigmoid_ce"])
