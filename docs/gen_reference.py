"""The docs' reference tables, generated from the code: config keys, CSV columns, layout.

    python docs/gen_reference.py config-keys      # print one table; no argument lists them

mkdocs runs this file as a hook (mkdocs.yml `hooks:`): a line `<!-- reference: NAME -->` in a
page becomes the table NAME, built when the site is built from what the code says: the
schema and conf/ (keys, defaults, group options), experiments/, results/columns.py's and bench.py's
column lists, analyze's output on the committed default comparison, the modules' docstrings.
So no table copies a default or a column name that could drift from the code. What each key
and column means is written here (MEANINGS); a key or column without a meaning, or a meaning
for one the code does not have, stops the build with a message naming it.
"""

import ast
import dataclasses
import functools
import re
import sys
import typing
from enum import Enum
from pathlib import Path

import yaml
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]  # the docs describe the clone they are built from
MARKER = re.compile(r"<!-- reference: ([\w-]+) -->")  # alone on its line


class ReferenceError(Exception):
    """The code and this file's meanings disagree: the message says which key or column."""


# --- what the keys and columns mean -------------------------------------------------
# Keys are the code's names; "a, b" gives several adjacent ones one row.
MEANINGS = {
    "config-keys": {
        "data.name": "`mnist` or `fashion_mnist` (set by the `data` group)",
        "data.root": "folder of the IDX files; null: `LOSSBENCH_DATA`, else `data install`'s location (MNIST) / Debian's location "
                     "(Fashion-MNIST); see [Data](data.md)",
        "data.train_size": "first n training images; null: all 50,000 before the validation block",
        "data.val_size": "validation = the last val_size images of the training file",
        "model.sizes": "layer sizes, input to output (hidden layers are sigmoid)",
        "model.init": "`large`: weights and biases N(0, 1) (ch. 1); `default`: weights N(0, 1)/sqrt(n_in), "
                      "biases N(0, 1) (ch. 3)",
        "optim.epochs": "epochs of SGD",
        "optim.batch_size": "mini-batch size m",
        "optim.l2": "L2 weight lambda: w <- (1 - eta lambda / n) w - ... (ch. 3); biases not decayed",
        "sweep.pairs": "pairs to train: `sigmoid_mse`, `sigmoid_ce`, `softmax_nll`, `linear_mse` "
                       "(the `pair` group sets it)",
        "sweep.lrs": "learning rates eta (finite, > 0)",
        "sweep.seeds": "an int n = seeds 0..n-1, or a list of seeds, e.g. `[0,7]`",
        "sweep.ensemble_size": "most models trained at once (a block of whole seeds, all pairs and lrs); "
                               "memory grows with it, and larger is faster on a GPU",
        "shard.count, shard.index": "this job trains block `index` of the seeds cut into `count` blocks "
                                    "(multirun sharding, see [Running on a cluster](cluster.md))",
        "study.name, study.chapter, study.section, study.book_test_acc, study.setting":
            "what a named study reproduces: its name, the book's chapter and section, the book's "
            "numbers (fractions) and the setting in words; printed beside the sweep's summary",
        "device": "`auto` (cuda if available), `cpu`, `cuda`",
        "dtype": "`float32` or `float64`",
        "engine": "how the steps run: `auto` (c on the cpu, triton on cuda, where they can; else eager on the "
                  "cpu, graphs on cuda), `c`, `triton`, `graphs`, `eager`; see [GPU](gpu.md)",
    },
    "slurm-keys": {
        "partition": "`--partition`; null: the cluster's default",
        "account, qos": "`--account`, `--qos`",
        "timeout_min": "`--time` (minutes, per job)",
        "gpus_per_task": "`--gpus-per-task`; where GPUs are gres: `gpus_per_task=null gres=gpu:1`",
        "cpus_per_task": "`--cpus-per-task`",
        "mem_gb": "`--mem`",
        "max_num_timeout": "a job cut off by its time limit or preempted is requeued up to this many times "
                           "and resumes from its ensembles' last finished epoch",
        "array_parallelism": "at most this many jobs at once (`--array=0-<n-1>%<this or n>`)",
        "name": "`--job-name`",
        "setup": "shell lines run before each job, e.g. `'hydra.launcher.setup=[\"module load cuda/12.4\"]'`",
    },
    "runs-columns": {
        "run_id": "`{pair}_lr{lr:g}_s{seed}_{hash}`, e.g. `sigmoid_ce_lr0.5_s3_1a2b3c4d`; `hash` = 8 hex digits "
                  "of the SHA-256 of the run's non-grid settings (sizes, init, batch_size, epochs, l2, dataset, "
                  "train_size, dtype, and config.yaml's `data.val_size`): equal settings give equal ids in any "
                  "directory",
        "pair": "`sigmoid_mse`, `sigmoid_ce`, `softmax_nll` or `linear_mse`",
        "activation": "the output activation: `sigmoid`, `softmax` or `linear`",
        "cost": "`quadratic`, `cross_entropy` or `log_likelihood`",
        "lr": "learning rate eta",
        "seed": "the seed that fixes the run's initialization and its per-epoch shuffling",
        "sizes": "layer sizes joined by `-`, e.g. `784-30-10`",
        "init": "`large` or `default` (see `model.init`)",
        "batch_size": "mini-batch size m",
        "epochs": "epochs trained (E)",
        "l2": "L2 weight lambda",
        "dataset": "`mnist` or `fashion_mnist`",
        "train_size": "training images used (e.g. 50000)",
        "status": "`ok`, or `diverged` if its parameters or training cost stopped being finite",
        "diverged_epoch": "the epoch at which it diverged; empty if it did not (its metrics are NaN from that "
                          "epoch on)",
        "peak_test_acc": "the best test accuracy over epochs 1..E",
        "peak_epoch": "the first epoch reaching `peak_test_acc`",
        "final_test_acc": "test accuracy after epoch E (empty if diverged)",
        "val_selected_test_acc": "test accuracy at `val_selected_epoch`: early stopping on validation, "
                                 "the honest number",
        "val_selected_epoch": "the first epoch (1..E) with the best validation accuracy",
        "wall_time_s": "the ensemble's wall time (building, evaluating, training, checkpointing; summed over "
                       "resumed sessions) divided by its number of models",
        "device": "`cpu` or `cuda`",
        "dtype": "`float32` or `float64`",
        "torch_version": "`torch.__version__`",
    },
    "epochs-columns": {
        "run_id": "as in runs.csv",
        "epoch": "0 = at initialization (no training metrics), then 1..E",
        "train_cost": "mean over the epoch's mini-batches of the per-example cost on the batch (NaN at epoch 0)",
        "val_acc, val_cost": "accuracy and mean cost on the validation set after the epoch",
        "test_acc, test_cost": "accuracy and mean cost on the 10,000 test images after the epoch",
        "test_saturated": "share of output units with sigma'(z) < 0.01 on the test set (NaN for non-sigmoid "
                          "outputs)",
        "grad_b{l}, grad_w{l}": "for layers l = 1..L (1 = first hidden layer, L = output layer): mean over the "
                                "epoch's steps of the L2 norm of the mini-batch gradient of the batch-mean cost "
                                "w.r.t. that layer's biases / weights (NaN at epoch 0)",
    },
    "summary-columns": {
        "group_id": "config group id (`g1`, `g2`, ...)",
        "pair, lr": "the (activation, cost) pair and the learning rate",
        "group": "the config group's label; the config columns themselves are at the end of the row",
        "seeds": "runs in the cell (distinct run_ids)",
        "diverged": "runs with status `diverged`",
        "n": "`seeds - diverged`: the runs behind every statistic below",
        "best_val_mean": "mean over runs of each run's best validation accuracy, max of `val_acc` over epochs "
                         "1..E: the learning-rate selection criterion",
        "peak_mean, peak_std, peak_ci95": "mean, sample standard deviation (ddof 1) and half-width of the "
            "two-sided 95% t-interval for the mean (`scipy.stats.ttest_1samp(...).confidence_interval`, n - 1 "
            "degrees of freedom) of `peak_test_acc` (best test accuracy over epochs 1..E). `peak_ci95` is empty "
            "for n = 1 (shown as \"n=1, no CI\")",
        "final_mean, final_std, final_ci95": "the same for `final_test_acc` (test accuracy after the last epoch)",
        "val_selected_mean, val_selected_std, val_selected_ci95": "the same for `val_selected_test_acc` (test "
            "accuracy at the first epoch with the best validation accuracy: early stopping on validation)",
        "learned_level, reach_learned_n, reach_learned_epochs_mean": "the data set's learned level (a fraction; see "
            "[accuracy levels](#accuracy-levels)), the runs whose test accuracy reaches it at some epoch >= 1, and the "
            "mean over those runs of the first such epoch (empty if none does). The .md shows \"k/n at e\" under "
            "\"epochs to\" the level",
        "good_level, reach_good_n, reach_good_epochs_mean": "the same for the data set's good level",
        "best_lr": "True at each (group, pair)'s best learning rate",
        "sizes, init, batch_size, epochs, l2, dataset, train_size, dtype": "the config group's settings, as in "
            "runs.csv",
    },
    "slowdown-columns": {
        "group_id, pair, lr, group": "as in summary.csv",
        "n": "runs",
        "out_grad_b, out_grad_w": "`grad_b{L}`, `grad_w{L}`: mean over epochs 1..K (`--first-epochs`, "
                                  "default 3), then over runs",
        "hidden_grad_b": "`grad_b1`, the first hidden layer, likewise (empty for a network without a hidden "
                         "layer)",
        "out_hidden_ratio": "mean over runs of each run's `out_grad_b / hidden_grad_b`",
        "saturated_init": "`test_saturated` at epoch 0 (share of output units with sigma'(z) < 0.01 on the test "
                          "set; empty for non-sigmoid pairs)",
        "saturated_first": "`test_saturated`, mean over epochs 1..K",
        "best_lr": "as in summary.csv; slowdown.md shows these rows",
    },
    "accuracy-levels": {
        "learned": "a run whose peak test accuracy stays below it is stuck: reliability (ranking.csv), the failures "
                   "of Golik et al.'s claim and the plateaus of Glorot & Bengio's; summary.csv counts the runs reaching it",
        "good": "speed: the epochs to reach it (summary.csv, ranking.csv, the verdict page's \"first to\", "
                "accuracy_vs_epoch's title)",
        "high": "speed at the top: the epochs to reach it (ranking.csv)",
    },
    "bench-columns": {
        "method": "`plain_pytorch`, `numpy_book`, `lossbench_eager`, `lossbench_graphs` or `lossbench_sweep` "
                  "(`--full`)",
        "shape": "layer sizes joined by `-`, e.g. `784-30-10`",
        "models, layout": "models trained at once, and how they are grouped into ensembles",
        "device, dtype": "`cpu` or `cuda`; `float32` (`float64` for the NumPy book)",
        "steps, seconds": "timed mini-batches per model and the seconds of the fastest window",
        "model_epochs_per_s": "models x steps / 5,000 / seconds",
        "gflops": "achieved, from the counted FLOPs",
        "peak_share": "`gflops / peak_gflops`",
        "torch_version, numpy_version, device_name, date": "what ran, where and when",
        "eval_s_per_epoch": "seconds of one evaluation of all the row's models on validation + test",
        "train_eval_model_epochs_per_s": "model-epochs/s with that evaluation included",
        "peak_gflops": "the best large float32 matmul on the device, at the start and the end of the run",
        "data": "`mnist` or `synthetic`",
        "trained_steps": "steps trained before the timing",
        "flush_denormal": "the share of a parallel op's denormal results flushed: 0 off, 1 on, 1/threads when "
                          "only the main thread flushes",
        "denormal_share": "denormal numbers among one window's results",
        "threads": "torch's cpu threads",
        "load1": "the 1-minute load average after the row",
        "other_cpu": "the share of the machine's cpu time other processes took during the row",
        "target": "issue 8's target for 160 models (model-epochs/s), where one is set",
    },
}


def described(table: str, names: list[str]) -> list[tuple[list[str], str]]:
    """`names` (the code's order) in rows of (names, meaning), each named by exactly one MEANINGS key."""
    rows, covered = {}, set()
    for key, meaning in MEANINGS[table].items():
        group = [name.strip() for name in key.split(",")]
        unknown = [name for name in group if name not in names]
        if unknown:
            raise ReferenceError(f"{table}: docs/gen_reference.py describes {unknown[0]!r}, which the code does "
                                 f"not have ({', '.join(names)}); remove or rename it there.")
        rows[names.index(group[0])] = (group, meaning)
        covered |= set(group)
    missing = [name for name in names if name not in covered]
    if missing:
        raise ReferenceError(f"{table}: {missing[0]!r} has no meaning in docs/gen_reference.py's MEANINGS; "
                             "add one there (one line) for the docs' reference table.")
    return [rows[index] for index in sorted(rows)]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows])


def code(names: list[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def columns_table(table: str, columns: list[str]) -> str:
    return markdown(["column", "meaning"], [[code(names), meaning] for names, meaning in described(table, columns)])


# --- config --------------------------------------------------------------------------
def value_text(value) -> str:
    """A config value as one writes it in an override."""
    if isinstance(value, Enum):
        return value.value
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"{value[:40]}..." if len(value) > 40 else (value or '""')
    if isinstance(value, list):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    return str(value)


def type_text(kind) -> str:
    if isinstance(kind, type) and issubclass(kind, Enum):
        return " or ".join(member.value for member in kind)
    if typing.get_origin(kind) is list:
        return f"list of {type_text(typing.get_args(kind)[0])}"
    if typing.get_origin(kind) is typing.Union:
        return " or ".join(type_text(arg) for arg in typing.get_args(kind) if arg is not type(None)) + " or null"
    return "int or list of int" if kind is typing.Any else kind.__name__  # Any: sweep.seeds, the one union


def schema_fields(schema, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, type) of every leaf of the schema, in its order."""
    fields = []
    for field in dataclasses.fields(schema):
        if dataclasses.is_dataclass(field.type):
            fields += schema_fields(field.type, f"{prefix}{field.name}.")
        else:
            fields.append((prefix + field.name, field.type))
    return fields


def config_keys() -> str:
    from lossbench import config
    cfg = config.compose_config()  # as `python -m lossbench sweep` composes it, with no overrides
    fields = dict(schema_fields(config.SweepConfig))
    rows = []
    for names, meaning in described("config-keys", list(fields)):
        defaults = ", ".join(f"`{value_text(default(cfg, name))}`" for name in names)
        types = "; ".join(dict.fromkeys(type_text(fields[name]) for name in names))
        rows.append([code(names), defaults, types, meaning])
    return markdown(["key", "default", "type", "meaning"], rows)


def default(cfg, key: str):
    """The composed value of `key`, lists and enums as plain Python."""
    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def yaml_comment(path: Path) -> str:
    """A config file's leading comment, up to its first example line: what the option is."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or line.startswith("#   "):
            break
        if "@package" not in line:
            lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def flat(node, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [item for key, value in node.items() for item in flat(value, f"{prefix}{key}.")]
    return [f"{prefix[:-1]}={value_text(node)}"]


def config_groups() -> str:
    from lossbench import config
    rows = []
    for group in sorted(d for d in config.CONF_DIR.iterdir() if d.is_dir() and d.name not in ("hydra", "__pycache__")):
        for path in sorted(group.glob("*.yaml")):
            text = path.read_text()
            values = yaml.safe_load(text) or {}
            values.pop("defaults", None)
            prefix = "" if "@package _global_" in text else f"{group.name}."
            sets = ", ".join(f"`{item}`" for item in flat(values, prefix))
            rows.append([f"`{group.name}={path.stem}`", yaml_comment(path), sets])
    return markdown(["option", "what", "sets"], rows)


def experiments() -> str:
    from lossbench import config
    rows = []
    for path in sorted(config.EXPERIMENTS_DIR.glob("*.yaml")):
        study = yaml.safe_load(path.read_text())
        info = study.pop("study", {})
        book = ", ".join(f"{100 * acc:.2f}%" for acc in info.get("book_test_acc", []))
        chapter = f"ch. {info['chapter']}" if info.get("chapter") else ""
        setting = " ".join(str(info.get("setting", "")).split())
        if study.get("command", "sweep") == "sweep":
            # `override /group: option` entries of the defaults list select group options
            options = [f"{key.split('/')[-1]}={value}" for entry in study.pop("defaults", [])
                       for key, value in entry.items()]
            sets = ", ".join(f"`{item}`" for item in options + flat(study))
            rows.append([f"`python -m lossbench sweep +experiment={path.stem}`", chapter, book, setting, sets])
        else:
            rows.append([f"`python -m lossbench {study['command']} {path.stem}`", chapter, book, setting, ""])
    return markdown(["command", "book", "book's number", "setting", "sets"], rows)


def slurm_keys() -> str:
    from lossbench import config
    values = yaml.safe_load((config.CONF_DIR / "hydra" / "launcher" / "lossbench_slurm.yaml").read_text())
    values.pop("defaults", None)
    rows = [[code(names), ", ".join(f"`{value_text(values[name])}`" for name in names), meaning]
            for names, meaning in described("slurm-keys", list(values))]
    return markdown(["key", "default", "sbatch"], rows)


# --- CSV columns -----------------------------------------------------------------------
def runs_columns() -> str:
    from lossbench.results import columns
    return columns_table("runs-columns", columns.RUN_COLUMNS)


def epochs_columns() -> str:
    from lossbench.results import columns
    grads = columns.metric_columns(3)[len(columns.BASE_METRICS):]
    if grads != [f"grad_{kind}{layer}" for layer in (1, 2, 3) for kind in "bw"]:
        raise ReferenceError(f"epochs-columns: columns.metric_columns(3) ends with {grads}, not grad_b{{l}}, "
                             "grad_w{l} per layer; update epochs_columns() in docs/gen_reference.py.")
    # run_id and epoch lead every row (columns.epoch_rows writes them before the metrics)
    return columns_table("epochs-columns", ["run_id", "epoch", *columns.BASE_METRICS, "grad_b{l}", "grad_w{l}"])


@functools.cache  # both analyze tables come from one load
def _default_comparison():
    """analyze's tables of the committed default comparison: their columns are what analyze writes."""
    from lossbench import statistics
    from lossbench.results import load
    runs, epochs = load.load_results([REPO / "results" / "default_comparison"])
    summary = statistics.summarize(runs, epochs)
    return summary, statistics.slowdown(runs, epochs, summary)


def summary_columns() -> str:
    return columns_table("summary-columns", list(_default_comparison()[0].columns))


def slowdown_columns() -> str:
    return columns_table("slowdown-columns", list(_default_comparison()[1].columns))


def accuracy_levels() -> str:
    from lossbench import statistics
    rows = [[code(names), meaning, *(f"{getattr(level, names[0]):.0%}" for level in statistics.LEVELS.values())]
            for names, meaning in described("accuracy-levels", statistics.LEVEL_NAMES)]
    return markdown(["level", "meaning", *(f"`{dataset}`" for dataset in statistics.LEVELS)], rows)


def bench_columns() -> str:
    from lossbench import bench
    return columns_table("bench-columns", bench.BENCH_COLUMNS)


# --- layout ------------------------------------------------------------------------------
def layout() -> str:
    """Every module of lossbench/: the command it serves (cli.COMMANDS) and its docstring's first line."""
    from lossbench.cli import COMMANDS
    commands = {module: name for name, (module, _) in COMMANDS.items()}
    rows = []
    for path in sorted((REPO / "lossbench").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        doc = ast.get_docstring(ast.parse(path.read_text())) or "-"
        command = f"`{commands[module]}`" if module in commands else ""
        rows.append([f"`{path.relative_to(REPO)}`", command, doc.split("\n")[0]])
    return markdown(["module", "command", "what"], rows)


def commands() -> str:
    from lossbench.cli import COMMANDS
    rows = [[f"`python -m lossbench {name}`", description, f"`{module}`"]
            for name, (module, description) in COMMANDS.items()]
    return markdown(["command", "what", "module"], rows)


TABLES = {
    "commands": commands, "config-keys": config_keys, "config-groups": config_groups, "experiments": experiments,
    "slurm-keys": slurm_keys, "runs-columns": runs_columns, "epochs-columns": epochs_columns,
    "summary-columns": summary_columns, "slowdown-columns": slowdown_columns, "accuracy-levels": accuracy_levels,
    "bench-columns": bench_columns,
    "layout": layout,
}


def expand(markdown_text: str, page: str = "page") -> str:
    """`markdown_text` with each marker line replaced by its table."""
    lines = []
    for line in markdown_text.split("\n"):
        marker = MARKER.fullmatch(line.strip())
        if marker and marker[1] not in TABLES:
            raise ReferenceError(f"{page}: unknown reference table {marker[1]!r}; the tables are: {', '.join(TABLES)}.")
        lines.append(TABLES[marker[1]]() if marker else line)
    return "\n".join(lines)


def on_page_markdown(markdown_text: str, page, **kwargs) -> str:
    """mkdocs hook: fill the page's reference tables."""
    return expand(markdown_text, page.file.src_uri)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in TABLES:
        print(f"usage: python docs/gen_reference.py TABLE; the tables: {', '.join(TABLES)}", file=sys.stderr)
        sys.exit(2)
    print(TABLES[sys.argv[1]]())
