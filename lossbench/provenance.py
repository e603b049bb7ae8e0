"""Where and how a result was made: the command, the code, the hardware, the versions, the wall time, the host's load.

    python -c "from lossbench import provenance; print(provenance.hardware('cpu'))"

`sweep` and `study` record it beside their results (run_info.json); `report` and `verdict`
print it beside the numbers, since a timing or a last bit means little without the machine.
`bench` names the device of each row (hardware) and what else ran meanwhile (cpu_seconds,
other_cpu): on a shared machine other processes can slow a timing many times.
"""

import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import time
from pathlib import Path

from lossbench import __version__, atomic

CHECKOUT = Path(__file__).resolve().parents[1]  # the repository root, when lossbench runs from a git checkout
CODE = ("lossbench", "conf", "experiments")  # what makes a result: the package and its configs, not results/ or docs/


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def code_version() -> str:
    """The code that makes a result: the commit of the git checkout lossbench runs from, with
    "+dirty" when its code has uncommitted changes; else (a wheel, no git) the package's version.

    Results of two training cores can agree statistically but not bit for bit, so a result names
    its commit. A sweep asks before it trains: a commit made while it runs did not make it.
    """
    try:
        top, commit = git("rev-parse", "--show-toplevel", "--short", "HEAD").splitlines()
        if Path(top).resolve() == CHECKOUT:  # not an installed copy inside some other repository's venv
            changed = git("status", "--porcelain", "--untracked-files=no", "--", *CODE)
            return commit + "+dirty" * bool(changed.strip())
    except (OSError, subprocess.SubprocessError, ValueError):  # no git, not a checkout, no commit yet
        pass
    return f"lossbench {__version__}"


def recorded_code_version(info: dict) -> str:
    """The code_version of a run_info.json (a dict); files written before it was recorded have none."""
    return info.get("code_version", "not recorded")


def hardware(device) -> str:
    """The GPU's name, or the CPU's model and core count, for `device` (a name or a torch.device):
    what a reader needs to compare timings."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:  # not Linux
        names = []
    model = names[0] if names else platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores"


def write_run_info(directory: Path, argv: list[str], device: str, wall_time_s: float, code: str):
    """Record how `directory` was made: the command, the code (a code_version() taken before the
    run), hardware, versions, and the wall time.

    A resumed sweep adds its time to the time already recorded there, and its code version to the
    versions there if it differs (a directory written before code_version existed has none).
    """
    import torch

    path = Path(directory) / "run_info.json"
    before = json.loads(path.read_text()) if path.exists() else {}
    versions = [v for v in before.get("code_version", "").split(", ") if v]
    info = {
        "command": shlex.join(["python", "-m", "lossbench", *argv]),
        "code_version": ", ".join(dict.fromkeys([*versions, code])),
        "hardware": hardware(device),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(before.get("wall_time_s", 0.0) + wall_time_s, 1),
    }
    atomic.atomic_write(path, (json.dumps(info, indent=2) + "\n").encode())


# --- host load: what else ran while something was timed -------------------------
def cpu_seconds() -> tuple[float, float, float]:
    """(wall, busy cpu seconds of the whole machine, cpu seconds of this process and its children)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):  # not Linux
        busy = math.nan
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def other_cpu(since: tuple[float, float, float]) -> float:
    """The share of the machine's cpu time that other processes took since `since` (a cpu_seconds())."""
    wall, busy, own = (b - a for a, b in zip(since, cpu_seconds()))
    return max(0.0, busy - own) / (wall * os.cpu_count())
