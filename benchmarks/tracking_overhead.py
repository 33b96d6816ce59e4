"""Benchmark 6 - tracking overhead: wall time of a training run with MLflow / the same run untracked.

What: core.train.train(params, force=True) with tracking_enabled=True (MLflow into a SQLite
store under outputs/bench/: run creation, every param, the config artifact, per-epoch metrics,
the FINISHED status) against tracking_enabled=False, two ways, all four interleaved:
  cold  each run in a fresh Python process, as `python -m core.train` runs (the tracked one
        also pays importing MLflow and opening the store) - the headline;
  warm  runs repeated inside this process (imports and store already warm: the logging alone).
Ratio = median(tracked) / median(untracked). The runs are short (--epochs x --steps, with
validation and checkpoints), so the ratio overstates a full-length run's: the absolute
overhead in seconds is printed, and the run length at which it would be 2%.
Target: <= 1.02.

    python benchmarks/tracking_overhead.py                        # 2 epochs x 10 steps, 3 reps (~1.5 min on 2 cores)
    python benchmarks/tracking_overhead.py --epochs 5 --steps 93  # a default-length run (slow)
    python benchmarks/tracking_overhead.py --profile full         # 1 epoch x 2 steps, batch 1, 1 rep on CPU (~2.5 min)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cli, output, stores, timing  # noqa: E402
from core.config import Params  # noqa: E402
from core.train import train  # noqa: E402

TARGET = 1.02
RUNNER = (
    "import sys; from core.config import load_params; from core.train import train; "
    "train(load_params(sys.argv[2], sys.argv[3:]), name='bench-tracking', force=True, "
    "tracking_enabled=sys.argv[1] == '1')"
)


class ColdRun:
    """One training run in a fresh interpreter (the same params through --set style overrides)."""

    def __init__(self, ctx: cli.Context, sets: list[str], tracked: bool):
        self.cmd = [sys.executable, "-c", RUNNER, "1" if tracked else "0", ctx.args.params, *sets]
        self.env = stores.child_env(ctx)

    def __call__(self) -> None:
        subprocess.run(
            self.cmd, env=self.env, cwd=cli.ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


def warm_run(params: Params, tracked: bool) -> None:
    with stores.quiet():
        train(params, name="bench-tracking", force=True, tracking_enabled=tracked)


def main() -> int:
    p = cli.parser(__doc__, reps=3, cpu_full_reps=1)
    p.add_argument(
        "--epochs", type=int, default=None, help="train.epochs of the timed run (default 2; 1 for full on CPU)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train.max_steps_per_epoch of the timed run (default 10; 2 for full on CPU)",
    )
    args = p.parse_args()
    ctx = cli.Context(args)
    full_cpu = args.profile == "full" and ctx.device.type == "cpu"
    args.epochs = args.epochs or (1 if full_cpu else 2)
    args.steps = args.steps or (2 if full_cpu else 10)
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # this process only: the benchmark's own store
    data = stores.ensure_store(stores.data_params(ctx))
    store = stores.fresh_dir(data.outputs.parent / f"tracking-{args.profile}")
    run = [
        f"train.epochs={args.epochs}",
        f"train.max_steps_per_epoch={args.steps}",
        f"train.batch_size={ctx.batch_size}",
        f"train.device={ctx.device.type}",
        stores.tracking_set(store),
    ]
    params = stores.data_params(ctx, *run)
    sets = stores.data_overrides(ctx, *run)
    cands = {
        "cold tracked": ColdRun(ctx, sets, True),
        "cold untracked": ColdRun(ctx, sets, False),
        "warm tracked": lambda: warm_run(params, True),
        "warm untracked": lambda: warm_run(params, False),
    }
    times = timing.interleaved(cands, args.reps, args.warmup, ctx.device)
    med = {n: timing.stats(t)["median_s"] for n, t in times.items()}
    rows = [
        [
            n,
            med[n],
            timing.stats(times[n])["min_s"],
            timing.stats(times[n])["max_s"],
            med[n] / med[n.split()[0] + " untracked"],
        ]
        for n in cands
    ]
    cold, warm = (
        timing.ratio(times, "cold tracked", "cold untracked"),
        timing.ratio(times, "warm tracked", "warm untracked"),
    )
    overhead = {k: med[f"{k} tracked"] - med[f"{k} untracked"] for k in ("cold", "warm")}
    ctx.note(f"run = {args.epochs} epoch(s) x {args.steps} steps + validation + checkpoints; MLflow store {store}")
    output.finish(
        "tracking_overhead",
        ctx,
        "Benchmark 6: training run with MLflow tracking vs untracked",
        ["run", "median s", "min s", "max s", "x untracked"],
        rows,
        {"epochs": args.epochs, "steps_per_epoch": args.steps, "overhead_s": overhead, "times_s": times},
        [
            output.headline("tracking overhead, fresh process per run: tracked / untracked", cold, TARGET),
            output.headline("tracking overhead, warm process: tracked / untracked", warm, TARGET),
        ],
        [
            f"absolute overhead per run: cold {overhead['cold']:.3f} s, warm {overhead['warm']:.3f} s "
            "(median differences); "
            f"derived, not measured: 2% of a run for runs of {max(overhead['cold'], 0) / 0.02:.0f} s (cold)"
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
