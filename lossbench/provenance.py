"""Where and how a result was made: the command, the hardware, the versions, the wall time.

    python -c "from lossbench import provenance; print(provenance.hardware('cpu'))"

`sweep` and `study` record it beside their results (run_info.json); `report` and `verdict`
print it beside the numbers, since a timing or a last bit means little without the machine.
"""

import datetime
import json
import os
import platform
import shlex
from pathlib import Path

from lossbench import atomic


def hardware(device: str) -> str:
    """The GPU's name, or the CPU's model and core count: what a reader needs to compare timings."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores"


def write_run_info(directory: Path, argv: list[str], device: str, wall_time_s: float):
    """Record how `directory` was made: the command, hardware, versions, and the wall time.

    A resumed sweep adds its time to the time already recorded there.
    """
    import torch

    path = Path(directory) / "run_info.json"
    before = json.loads(path.read_text()).get("wall_time_s", 0.0) if path.exists() else 0.0
    info = {
        "command": shlex.join(["python", "-m", "lossbench", *argv]),
        "hardware": hardware(device),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(before + wall_time_s, 1),
    }
    atomic.atomic_write(path, (json.dumps(info, indent=2) + "\n").encode())
