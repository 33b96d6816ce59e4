"""The command line every benchmark shares, and the run context it resolves to.

One parser and one Context so that every script takes the same options (--profile, --reps,
--device, --threads, ...) with the same meaning, and so that the batch size and repetition
defaults for slow settings (the full profile on CPU) are decided in one place and said in the
output.

Profiles: `default` = params.yaml as is; `full` = the paper's setting, profiles/paper.yaml
(ResNet-50, 320x320, C = 256, its heads, batch 8), layered over params.yaml as `--set profiles=[paper]`;
the timed models start at random (`fixtures.build_model`), so its weights file need not exist.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from core.config import load_params
from core.runtime import channels_last, cpu_cores, cpu_model, pick_device

ROOT = Path(__file__).resolve().parents[1]
PROFILES: dict[str, tuple[str, ...]] = {
    "default": (),
    "full": ("profiles=[paper]",),
}
CPU_FULL_BATCH = 1  # ResNet-50 at 320 px on a few CPU cores: one clip per step keeps runs short
DEFAULT_OBJECTS = 4  # instances per synthetic clip = data.synthetic.actors_max


def parser(
    doc: str | None,
    reps: int,
    warmup: int = 1,
    cpu_full_reps: int | None = None,
    synthetic: bool = False,
    batch: bool = True,
) -> argparse.ArgumentParser:
    """The options every benchmark takes; `doc` (the script's docstring) is its --help text.
    `cpu_full_reps`: fewer default repetitions for the full profile on CPU (slow steps);
    `synthetic`: the benchmark times synthetic batches (adds --objects); `batch`: it has a batch size."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default="default",
        help="default = params.yaml; full = profiles/paper.yaml",
    )
    full_reps = f"; {cpu_full_reps} for full on CPU" if cpu_full_reps else ""
    p.add_argument(
        "--reps", type=int, default=None, help=f"timed repetitions per candidate (default {reps}{full_reps})"
    )
    p.set_defaults(default_reps=(reps, cpu_full_reps or reps))
    p.add_argument(
        "--warmup", type=int, default=warmup, help=f"untimed repetitions per candidate first (default {warmup})"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto = cuda when available")
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: the cores this process may use)"
    )
    if batch:
        p.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help=f"clips per step (default: train.batch_size; {CPU_FULL_BATCH} for the full profile on CPU)",
        )
    p.add_argument(
        "--params", default=str(ROOT / "params.yaml"), help="params file (default: the project's params.yaml)"
    )
    if synthetic:
        p.add_argument(
            "--objects",
            type=int,
            default=DEFAULT_OBJECTS,
            help=f"instances per clip in the synthetic batch (default {DEFAULT_OBJECTS} = data.synthetic.actors_max)",
        )
    return p


class Context:
    """What one benchmark run is: its args, validated params, device and thread count."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.threads = args.threads or cpu_cores()
        torch.set_num_threads(self.threads)
        self.params = load_params(args.params, PROFILES[args.profile])
        self.device = pick_device(args.device)
        self.notes: list[str] = []
        full_cpu = args.profile == "full" and self.device.type == "cpu"
        if args.reps is None:
            args.reps = args.default_reps[1] if full_cpu else args.default_reps[0]
        given = getattr(args, "batch_size", None)
        self.batch_size: int | None = (given or self.params.train.batch_size) if hasattr(args, "batch_size") else None
        if hasattr(args, "batch_size") and given is None and full_cpu:
            self.batch_size = CPU_FULL_BATCH
            self.note(
                f"full profile on CPU: batch size {CPU_FULL_BATCH} "
                f"(not train.batch_size={self.params.train.batch_size}) "
                "to keep the run short; pass --batch-size to change"
            )
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def note(self, text: str) -> None:
        """A line printed under the table and kept in the JSON: why a setting differs from the default."""
        self.notes.append(text)

    @property
    def channels_last(self) -> bool:
        """As the trainer (core.runtime.channels_last)."""
        return channels_last(self.device, self.params.train)

    def machine(self) -> dict[str, Any]:
        """The machine a figure was measured on (a ratio means little without it)."""
        info = {
            "cpu_count": os.cpu_count(),
            "cpu_affinity": cpu_cores(),
            "torch_threads": self.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_model(),
        }
        if self.device.type == "cuda":
            info["cuda"] = torch.version.cuda
        return info

    def header(self) -> dict[str, Any]:
        """The settings of the run, written at the top of its JSON result."""
        a = self.args
        return {
            "profile": a.profile,
            "profile_overrides": list(PROFILES[a.profile]),
            "reps": a.reps,
            "warmup": a.warmup,
            "batch_size": self.batch_size,
            "machine": self.machine(),
            "argv": sys.argv[1:],
        }
