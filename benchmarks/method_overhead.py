"""Benchmark 1 - method overhead: training-step time of each Table-3 variant / the Baseline's.

What: one optimisation step (forward under autocast, cvls_loss, zero_grad, backward, Adam step;
exactly the trainer's core.train.train_step) of each `ablation.variants` row, on the same synthetic
batch (--objects instances per clip), in one process, the variants interleaved; ratio =
median(variant) / median(Baseline). The variants differ only in loss.ccl / rhic / lcf.
Target: full CVLS (CCL+RHIC+LCF) <= 1.10x Baseline, on the default and on the full profile.

    python benchmarks/method_overhead.py                  # CPU default profile (~15 s on 2 cores)
    python benchmarks/method_overhead.py --profile full   # ResNet-50 at 320 (batch 1, 3 reps on CPU, ~1.2 min)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cli, fixtures, output, timing  # noqa: E402

TARGET = 1.10
FULL = "CCL+RHIC+LCF"
VARIANT_ORDER = ("Baseline", "CCL", "CCL+RHIC", "CCL+LCF", "CCL+RHIC+LCF")  # Table 3's rows, Baseline first


def main() -> int:
    args = cli.parser(__doc__, reps=15, cpu_full_reps=3, synthetic=True).parse_args()
    ctx = cli.Context(args)
    batch = fixtures.synthetic_batch(ctx.params, ctx.batch_size, args.objects, ctx.device, ctx.channels_last)
    names = [n for n in VARIANT_ORDER if n in ctx.params.ablation.variants] or list(ctx.params.ablation.variants)
    steps = {n: fixtures.make_step(ctx.params.with_variant(n), ctx, batch) for n in names}
    times = timing.interleaved(steps, args.reps, args.warmup, ctx.device)
    base = names[0]
    rows, variants = [], {}
    for n in names:
        s = timing.stats(times[n])
        r = timing.ratio(times, n, base)
        variants[n] = {**s, "ratio_to_baseline": r, "times_s": times[n]}
        rows.append([n, 1e3 * s["median_s"], 1e3 * s["min_s"], 1e3 * s["max_s"], r])
    full = variants.get(FULL, {}).get("ratio_to_baseline")
    output.finish(
        "method_overhead",
        ctx,
        "Benchmark 1: training-step time per Table-3 variant",
        ["variant", "median ms", "min ms", "max ms", f"x {base}"],
        rows,
        {"objects": args.objects, "baseline": base, "variants": variants},
        [output.headline(f"method overhead: {FULL} step / {base} step", full, TARGET)],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
