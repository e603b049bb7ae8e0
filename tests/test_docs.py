"""The docs' generated reference tables: every key and column of the code is in them, with its default.

    python -m pytest tests/test_docs.py
"""

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lossbench import bench, config, statistics
from lossbench.results import columns

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = "\n".join(page.read_text() for page in sorted(DOCS.glob("*.md")))
# What the pages name of tests/: files (a glob where a page says tests/test_studies_*.py), test
# functions in backticks, and commands that select tests by keyword: pytest tests/FILE.py -k "EXPR"
TEST_FILES = sorted(set(re.findall(r"tests/test_[\w*]+\.py", PAGES)))
TEST_NAMES = sorted(set(re.findall(r"`(test_\w+)`", PAGES)))
KEYWORD_COMMANDS = sorted(set(re.findall(r"pytest (tests/\S+\.py) -k (\"[^\"]+\"|[^\s`]+)", PAGES)))


@pytest.fixture(scope="module")
def gen():
    """docs/gen_reference.py, the mkdocs hook (a file of the docs, not of the package)."""
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row_of(table: str, name: str) -> str:
    """The table row whose first cell names `name`."""
    rows = [line for line in table.splitlines() if f"`{name}`" in line.split(" | ")[0]]
    assert len(rows) == 1, f"{name}: {len(rows)} rows"
    return rows[0]


def test_the_pages_use_every_table_and_only_known_ones(gen):
    used = {match for page in DOCS.glob("*.md") for match in gen.MARKER.findall(page.read_text())}
    assert used == set(gen.TABLES)


def test_config_table_lists_every_schema_key_with_its_composed_default(gen):
    table = gen.config_keys()
    cfg = config.compose_config()
    for key, _ in gen.schema_fields(config.SweepConfig):
        assert f"`{gen.value_text(gen.default(cfg, key))}`" in row_of(table, key), key
    assert "| `optim.epochs` | `30` | int |" in table
    assert "`[0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 3.0, 10.0]`" in row_of(table, "sweep.lrs")
    assert "large or default" in row_of(table, "model.init")


def test_group_options_and_studies_come_from_conf_and_experiments(gen):
    groups = gen.config_groups()
    for path in config.CONF_DIR.glob("[!h]*/*.yaml"):  # every group but hydra/
        assert f"`{path.parent.name}={path.stem}`" in groups
    assert "`model.sizes=[784, 100, 10]`, `model.init=large`" in row_of(groups, "model=book_h100")
    studies = gen.experiments()
    for path in config.EXPERIMENTS_DIR.glob("*.yaml"):
        assert path.stem in studies
    assert "95.42%" in row_of(studies, "python -m lossbench sweep +experiment=nielsen_ch1_h30")


@pytest.mark.parametrize("table,columns", [
    ("runs-columns", columns.RUN_COLUMNS),
    ("bench-columns", bench.BENCH_COLUMNS),
    ("epochs-columns", ["run_id", "epoch", *columns.BASE_METRICS, "grad_b{l}", "grad_w{l}"]),
    ("summary-columns", ["best_val_mean", "peak_ci95", "good_level", "reach_good_epochs_mean", "best_lr",
                         *statistics.CONFIG_COLUMNS]),
    ("accuracy-levels", statistics.LEVEL_NAMES),
    ("slowdown-columns", ["out_grad_b", "out_hidden_ratio", "saturated_first"]),
])
def test_column_tables_name_every_column(gen, table, columns):
    text = gen.TABLES[table]()
    for column in columns:
        assert f"`{column}`" in text, column


def test_a_column_without_a_meaning_stops_the_build(gen, monkeypatch):
    monkeypatch.setattr(columns, "RUN_COLUMNS", [*columns.RUN_COLUMNS, "new_column"])
    with pytest.raises(gen.ReferenceError, match="runs-columns: 'new_column' has no meaning"):
        gen.runs_columns()


def test_a_meaning_for_a_column_the_code_lacks_stops_the_build(gen, monkeypatch):
    monkeypatch.setitem(gen.MEANINGS, "bench-columns", {**gen.MEANINGS["bench-columns"], "gone": "a column"})
    with pytest.raises(gen.ReferenceError, match="describes 'gone', which the code does not have"):
        gen.bench_columns()


def test_layout_lists_every_module_with_its_command(gen):
    table = gen.layout()
    for path in (DOCS.parent / "lossbench").rglob("*.py"):
        assert f"`{path.relative_to(DOCS.parent)}`" in table
    assert re.search(r"`lossbench/sweep_cli.py` \| `sweep` \| The sweep command", table)


def test_markers_become_tables_and_unknown_ones_are_errors(gen):
    page = "text\n<!-- reference: slurm-keys -->\nmore"
    expanded = gen.expand(page)
    assert "| `timeout_min` | `720` |" in expanded and "reference:" not in expanded
    with pytest.raises(gen.ReferenceError, match="unknown reference table 'nope'"):
        gen.expand("<!-- reference: nope -->", "x.md")


def test_the_levels_table_gives_each_data_sets_levels(gen):
    table = gen.accuracy_levels()
    assert row_of(table, "learned").endswith("| 90% | 80% |") and row_of(table, "high").endswith("| 97% | 87% |")


def test_the_extras_table_lists_every_extra_of_pyproject():
    extras = tomllib.loads((DOCS.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    index = (DOCS / "index.md").read_text()
    for extra in extras:
        assert f"| `{extra}` |" in index, extra


@pytest.mark.parametrize("pattern", TEST_FILES)
def test_each_test_file_the_docs_name_exists(pattern):
    assert list(DOCS.parent.glob(pattern)), pattern


def test_each_test_function_the_docs_name_exists():
    """A backticked test_... is a test function of tests/ or a column (test_acc, test_saturated)."""
    tests = {name for path in (DOCS.parent / "tests").glob("test_*.py")
             for name in re.findall(r"^\s*def (test_\w+)", path.read_text(), re.M)}
    assert len(TEST_NAMES) >= 5 and set(TEST_NAMES) - tests <= set(columns.BASE_METRICS)


@pytest.mark.slow
def test_each_keyword_command_of_the_docs_selects_tests():
    """pytest itself decides what -k selects: one child collects for every command (pytest.main
    again and again, its imports paid once; a child for each of the 12 took 106 s under load)."""
    assert len(KEYWORD_COMMANDS) >= 10  # the fault record's commands are found
    commands = [[path, "-k", keywords.strip('"')] for path, keywords in KEYWORD_COMMANDS]
    child = ("import json, sys, pytest\n"
             "codes = [int(pytest.main(['--collect-only', '-qq', '-p', 'no:cacheprovider', *args]))"
             " for args in json.loads(sys.argv[1])]\n"
             "print(json.dumps(codes))")
    done = subprocess.run([sys.executable, "-c", child, json.dumps(commands)], cwd=DOCS.parent,
                          capture_output=True, text=True, timeout=600)
    codes = json.loads(done.stdout.splitlines()[-1])  # 0: tests collected; 5: none selected
    assert dict(zip(map(" ".join, commands), codes)) == {" ".join(args): 0 for args in commands}
