"""Tests of the one device resolver behind `device=`, `--device` and load_split's device.

    python -m pytest tests/test_devices.py
"""

import pytest
import torch

from lossbench.devices import resolve_device
from lossbench.errors import UserError


def test_auto_is_cuda_when_torch_sees_one_else_cpu():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_a_name_that_is_no_device_is_named_as_the_user_wrote_it():
    with pytest.raises(UserError, match=r"^device='gpu' is not a device \(.*\); use auto, cpu or cuda\[:N\]\.$"):
        resolve_device("gpu")
    with pytest.raises(UserError, match=r"^--device gpu is not a device"):
        resolve_device("gpu", option="--device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_without_a_cuda_device_says_what_to_use_instead():
    with pytest.raises(UserError, match=r"^--device cuda, but torch .* sees no CUDA device; use --device cpu or "
                                        r"--device auto\.$"):
        resolve_device("cuda", option="--device")
    with pytest.raises(UserError, match=r"^device='cuda:1', but torch .* sees no CUDA device; use device='cpu'"):
        resolve_device("cuda:1")
