"""Which torch device a name means: the one resolver for `device=`, `--device` and load_split's device.

    python -c "from lossbench.devices import resolve_device; print(resolve_device('auto'))"

auto is cuda when torch sees a CUDA device, else cpu. A name that is no device, or a CUDA device
that this torch cannot see, is bad input: a UserError that names it as the user wrote it.
"""

from lossbench.errors import UserError


def resolve_device(name, option: str = "device"):
    """The torch.device that `name` (auto, cpu, cuda, cuda:N, or a torch.device) means. `option`: how
    the user gave it, for the message: a config key (device: `device='cuda'`) or a flag (--device:
    `--device cuda`)."""
    import torch  # here, not at the top: config.py imports this module for `sweep --help`

    def written(value) -> str:
        return f"{option} {value}" if option.startswith("--") else f"{option}={str(value)!r}"

    if str(name) == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise UserError(f"{written(name)} is not a device ({err}); use auto, cpu or cuda[:N].") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{written(name)}, but torch {torch.__version__} sees no CUDA device; use "
                        f"{written('cpu')} or {written('auto')}.")
    return device
