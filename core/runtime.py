"""Where and how a run executes: device, seeds, determinism, bf16 autocast, torchrun DDP.

The same code runs on CPU and CUDA; only these few switches differ.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from core.errors import UserError
from core.sections import TrainParams

M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is 'cuda' but no CUDA device is available (set train.device=auto or cpu)")
    if pref in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: torch.device) -> Dist:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; in deterministic mode also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def autocast(device: torch.device, tp: TrainParams) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA with train.bf16, on the CPU as train.cpu_bf16 says (`cpu_bf16`);
    else full precision."""
    if device.type == "cuda" and tp.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and cpu_bf16(tp):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 / AMX), as oneDNN sees it."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_bf16(tp: TrainParams) -> bool:
    """Whether CPU runs compute in bf16: train.cpu_bf16 auto = where the CPU has native bf16 (a CPU
    without it emulates bf16, slower than fp32); true insists, a one-line error on such a CPU."""
    if tp.cpu_bf16 == "auto":
        return native_cpu_bf16()
    if tp.cpu_bf16 and not native_cpu_bf16():
        raise UserError(
            f"train.cpu_bf16 is true but this CPU ({cpu_model()}) has no native bf16 (AVX512-BF16 / AMX); "
            "set train.cpu_bf16=auto or false"
        )
    return bool(tp.cpu_bf16)


def precision(device: torch.device, tp: TrainParams) -> str:
    """'bf16' (autocast) or 'fp32': what `autocast` gives a run on `device`."""
    bf16 = tp.bf16 if device.type == "cuda" else cpu_bf16(tp)
    return "bf16" if bf16 else "fp32"


def channels_last(device: torch.device, tp: TrainParams) -> bool:
    """Whether models and frames use the channels_last memory format: on CUDA with
    train.channels_last, on the CPU with bf16 (there it pays only with bf16: against an fp32 NCHW
    training step, 0.92x the speed channels_last in fp32, 1.29x NCHW and 1.35x channels_last in
    bf16, on the AMD default machine)."""
    return (device.type == "cuda" and tp.channels_last) or (device.type == "cpu" and cpu_bf16(tp))


def rng_state() -> dict:
    """All RNG states, as types `torch.load(weights_only=True)` accepts (no numpy arrays)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def on_device(module: M, device: torch.device, tp: TrainParams) -> M:
    """`module` on `device` in the run's memory format (`channels_last`): one place, because in bf16
    the weights' format changes the numbers, so training, evaluation and export must agree."""
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if channels_last(device, tp) else module


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device, tp: TrainParams) -> dict[str, str]:
    """What decides a run's floating-point results besides its config, seed and data: the library
    builds, the CPU (oneDNN picks its kernels by the CPU's instruction set: capping it at AVX2 on
    one machine gave other weights after 80 steps), the thread count, the GPU and the precision
    (train.cpu_bf16 auto follows the CPU). Two runs of one config match bitwise only when these
    match; a difference here explains rows that move between machines with the same seeds."""
    import torchvision  # (every process that trains has it imported already)

    env = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu": cpu_model(),
        "isa": torch.backends.cpu.get_cpu_capability(),  # the kernels torch dispatches to: AVX2, AVX512, ...
        "threads": str(torch.get_num_threads()),
        "precision": precision(device, tp),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_gpus(n_workers: int, device_pref: str) -> list[str | None]:
    """The GPU each of n local workers is pinned to (its CUDA_VISIBLE_DEVICES), one GPU per worker
    round-robin over the visible ones; None each on CPU or with a single GPU (nothing to pin)."""
    if device_pref == "cpu" or not torch.cuda.is_available():
        return [None] * n_workers
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
    ids = ids or [str(i) for i in range(torch.cuda.device_count())]
    return pin_round_robin(n_workers, ids)


def pin_round_robin(n_workers: int, devices: list[str]) -> list[str | None]:
    """Worker i gets devices[i % len(devices)]; no pinning when there are fewer than two devices."""
    if len(devices) < 2:
        return [None] * n_workers
    return [devices[i % len(devices)] for i in range(n_workers)]
