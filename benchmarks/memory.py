"""Benchmark 7 - memory: peak RSS of a CPU training run; peak CUDA memory of the full-size profile.

What: (a) `python -m core.train --force` (one epoch, or --steps steps, tracked into a
benchmark MLflow store, validation included) on CPU in a child process; its peak resident set
is the ru_maxrss that os.wait4 returns for that child. The child is started by a tiny
launcher process, so the figure is the training process's own peak (a child forked straight
from this torch-loaded process would inherit its high-water mark). (b) On CUDA: the full
profile's training step (ResNet-50, 320x320, train.batch_size, or --cuda-batch) on a
synthetic batch for a few steps, torch.cuda.max_memory_allocated / max_memory_reserved
(weights, Adam state and activations; printed as skipped without a CUDA device).
Target: peak RSS <= 4 GiB for the CPU default run.

    python benchmarks/memory.py                     # CPU default run, one epoch (~30 s), + CUDA when present
    python benchmarks/memory.py --profile full      # the RSS run at full size (batch 1, 3 steps on CPU, ~45 s)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cli, fixtures, output, stores, timing  # noqa: E402
from core.config import load_params  # noqa: E402
from core.runtime import pick_device  # noqa: E402

TARGET_GIB = 4.0
GIB = 1024**3
LAUNCHER = """
import json, os, subprocess, sys
with open(sys.argv[1], "wb") as log:
    child = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"maxrss_kib": usage.ru_maxrss, "rc": os.waitstatus_to_exitcode(status)}))
"""


def rss_run(ctx: cli.Context, steps: int | None) -> dict:
    """One CPU training run in a launched child; its peak RSS and exit code."""
    data = stores.ensure_store(stores.data_params(ctx))
    store = stores.fresh_dir(data.outputs.parent / f"memory-{ctx.args.profile}")
    sets = stores.data_overrides(
        ctx,
        "train.device=cpu",
        "train.epochs=1",
        f"train.batch_size={ctx.batch_size}",
        stores.tracking_set(store),
        *([f"train.max_steps_per_epoch={steps}"] if steps else []),
    )
    cmd = [
        sys.executable,
        "-m",
        "core.train",
        "--params",
        ctx.args.params,
        *(x for s in sets for x in ("--set", s)),
        "--force",
    ]
    env = stores.child_env(ctx)
    log = store / "train.log"
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(log), *cmd],
        capture_output=True,
        text=True,
        env=env,
        cwd=cli.ROOT,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["rc"] != 0:
        raise SystemExit(f"training run failed (exit {out['rc']}); log: {log}\n{log.read_text()[-2000:]}")
    return {"peak_rss_gib": out["maxrss_kib"] * 1024 / GIB, "command": cmd, "log": str(log), "steps": steps}


def cuda_peak(ctx: cli.Context, batch_size: int | None, steps: int = 3) -> dict | None:
    """Peak CUDA memory of the full profile's training step (None without CUDA)."""
    if ctx.device.type != "cuda":
        return None
    params = load_params(ctx.args.params, cli.PROFILES["full"])
    b = batch_size or params.train.batch_size
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(ctx.device)
    cl = params.train.channels_last
    batch = fixtures.synthetic_batch(params, b, cli.DEFAULT_OBJECTS, ctx.device, cl)
    step = fixtures.TrainStep(params, fixtures.build_model(params, ctx.device, cl), ctx.device, batch)
    for _ in range(steps):
        step()
    timing.sync(ctx.device)
    return {
        "batch_size": b,
        "steps": steps,
        "bf16": params.train.bf16,
        "channels_last": params.train.channels_last,
        "max_allocated_gib": torch.cuda.max_memory_allocated(ctx.device) / GIB,
        "max_reserved_gib": torch.cuda.max_memory_reserved(ctx.device) / GIB,
    }


def main() -> int:
    p = cli.parser(__doc__, reps=1, warmup=0)
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train.max_steps_per_epoch of the RSS run (default: a whole epoch; 3 for full on CPU)",
    )
    p.add_argument(
        "--cuda-batch", type=int, default=None, help="batch of the CUDA measurement (default: train.batch_size)"
    )
    args = p.parse_args()
    ctx = cli.Context(args)
    ctx.device = torch.device("cpu")  # the RSS run is a CPU run; CUDA is measured separately below
    steps = args.steps or (3 if args.profile == "full" else None)
    runs = [rss_run(ctx, steps) for _ in range(args.reps)]
    peak = max(r["peak_rss_gib"] for r in runs)
    ctx.device = pick_device(args.device)
    cuda = cuda_peak(ctx, args.cuda_batch)
    rows = [[f"CPU training run ({args.profile}, {'1 epoch' if not steps else f'{steps} steps'})", "peak RSS", peak]]
    if cuda:
        rows += [
            [f"CUDA full-size step (batch {cuda['batch_size']})", "max allocated", cuda["max_allocated_gib"]],
            [f"CUDA full-size step (batch {cuda['batch_size']})", "max reserved", cuda["max_reserved_gib"]],
        ]
    else:
        rows.append(["CUDA full-size step", "skipped", "no CUDA device"])
    output.finish(
        "memory",
        ctx,
        "Benchmark 7: peak memory",
        ["measurement", "what", "GiB"],
        rows,
        {"rss_runs": runs, "cuda": cuda},
        [
            output.headline(
                "peak RSS of the CPU training run", peak, TARGET_GIB, unit=" GiB", applies=args.profile == "default"
            ),
            output.headline(
                "peak CUDA memory, full size (max allocated)", cuda["max_allocated_gib"] if cuda else None, unit=" GiB"
            ),
        ],
        timing=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
