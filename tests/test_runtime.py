"""core/runtime.py: which precision and memory format a run uses on which device, and its environment."""

from __future__ import annotations

import pytest
import torch

from core import runtime
from core.errors import UserError

from .conftest import ROOT

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def train_params(**overrides: object):
    from core.config import load_params

    return load_params(ROOT / "params.yaml").replace(**{f"train.{k}": v for k, v in overrides.items()}).train


@pytest.mark.parametrize(
    ("device", "cl", "cpu_bf16", "native", "expected"),
    [
        (CUDA, True, False, True, True),
        (CUDA, False, True, True, False),  # on CUDA train.channels_last alone decides
        (CPU, True, False, True, False),  # fp32 on the CPU: channels_last does not pay
        (CPU, False, True, True, True),  # the CPU bf16 path brings its own
        (CPU, True, "auto", True, True),
        (CPU, True, "auto", False, False),  # auto on a CPU without native bf16: fp32, NCHW
    ],
)
def test_channels_last_by_device_and_cpu(monkeypatch, device, cl, cpu_bf16, native, expected):
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: native)
    assert runtime.channels_last(device, train_params(channels_last=cl, cpu_bf16=cpu_bf16)) is expected


@pytest.mark.parametrize(
    ("setting", "native", "dtype"),
    [(False, True, "fp32"), ("auto", True, "bf16"), ("auto", False, "fp32"), (True, True, "bf16")],
)
def test_cpu_precision_follows_train_cpu_bf16_and_the_cpu(monkeypatch, setting, native, dtype):
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: native)
    tp = train_params(cpu_bf16=setting)
    with runtime.autocast(CPU, tp):
        got = (torch.randn(4, 8) @ torch.randn(8, 3)).dtype
    assert {torch.float32: "fp32", torch.bfloat16: "bf16"}[got] == dtype == runtime.precision(CPU, tp)


def test_cpu_bf16_true_on_a_cpu_without_it_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: False)
    with pytest.raises(UserError, match=r"^train.cpu_bf16 is true but this CPU \(.+\) has no native bf16"):
        runtime.autocast(CPU, train_params(cpu_bf16=True))


def test_cuda_precision_is_train_bf16():
    assert runtime.precision(CUDA, train_params(bf16=True, cpu_bf16=False)) == "bf16"
    assert runtime.precision(CUDA, train_params(bf16=False, cpu_bf16=True)) == "fp32"


def test_environment_names_the_builds_the_cpu_the_threads_and_the_precision(monkeypatch):
    import torchvision

    monkeypatch.setattr(runtime, "cpu_model", lambda: "Some CPU 9000")
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env = runtime.environment(CPU, train_params(cpu_bf16="auto"))
    finally:
        torch.set_num_threads(before)
    assert env == {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,  # with its build tag, like torch's
        "cpu": "Some CPU 9000",
        "isa": torch.backends.cpu.get_cpu_capability(),
        "threads": "1",
        "precision": "fp32",
    }
