"""Benchmark 2 - distance to the backbone floor: full CVLS step / backbone-alone step, same batch.

What: the full CVLS training step (CCL+RHIC+LCF; the trainer's core.train.train_step) against a
training step of the ResNet backbone alone on the same frames (forward of Res2..Res5,
backward of the mean of their outputs, Adam on the backbone's weights, the same autocast), in
one process, interleaved; ratio = median(full) / median(backbone). For the breakdown it also
times the visual encoder alone (backbone + SEM + top-down merge) and the Baseline step.
Target: <= 1.35x at full size (heads and losses cost at most a third of the backbone).

    python benchmarks/backbone_floor.py --profile full    # the target's setting (batch 1, 3 reps on CPU, ~1.2 min)
    python benchmarks/backbone_floor.py                   # CPU default profile (~15 s)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cli, fixtures, output, timing  # noqa: E402
from core.runtime import autocast  # noqa: E402

TARGET = 1.35
FULL = "CCL+RHIC+LCF"


class PartStep:
    """Training step of one part of the network on the batch's frames: forward, backward of the
    mean of every output map, Adam on that part's weights (the floor the heads are measured against)."""

    def __init__(self, ctx: cli.Context, part: torch.nn.Module, frames: torch.Tensor):
        self.ctx, self.part, self.frames = ctx, part, frames.flatten(0, 1)  # [B*T, 3, S, S] as CVLS.forward
        tp = ctx.params.train
        self.opt = torch.optim.Adam(part.parameters(), lr=tp.lr, weight_decay=tp.weight_decay, fused=True)

    def __call__(self) -> None:
        with autocast(self.ctx.device, self.ctx.params.train):
            out = self.part(self.frames)
            loss = sum(o.float().mean() for o in (out if isinstance(out, list) else [out]))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def main() -> int:
    args = cli.parser(__doc__, reps=15, cpu_full_reps=3, synthetic=True).parse_args()
    ctx = cli.Context(args)
    full = ctx.params.with_variant(FULL)
    batch = fixtures.synthetic_batch(full, ctx.batch_size, args.objects, ctx.device, ctx.channels_last)
    cands = {
        "backbone": PartStep(
            ctx, fixtures.build_model(full, ctx.device, ctx.channels_last).visual.backbone, batch["frames"]
        ),
        "visual encoder": PartStep(
            ctx, fixtures.build_model(full, ctx.device, ctx.channels_last).visual, batch["frames"]
        ),
        "Baseline step": fixtures.make_step(ctx.params.with_variant("Baseline"), ctx, batch),
        f"{FULL} step": fixtures.make_step(full, ctx, batch),
    }
    times = timing.interleaved(cands, args.reps, args.warmup, ctx.device)
    flops = {n: timing.count_flops(fn) for n, fn in cands.items()}  # one more step each, untimed
    rows, parts = [], {}
    for n in cands:
        s = timing.stats(times[n])
        r = timing.ratio(times, n, "backbone")
        fr = flops[n] / flops["backbone"]
        parts[n] = {**s, "ratio_to_backbone": r, "flops": flops[n], "flops_ratio_to_backbone": fr, "times_s": times[n]}
        rows.append([n, 1e3 * s["median_s"], 1e3 * s["min_s"], 1e3 * s["max_s"], r, flops[n] / 1e9, fr])
    value = parts[f"{FULL} step"]["ratio_to_backbone"]
    flop_value = parts[f"{FULL} step"]["flops_ratio_to_backbone"]
    output.finish(
        "backbone_floor",
        ctx,
        "Benchmark 2: full CVLS step vs the backbone alone",
        ["candidate", "median ms", "min ms", "max ms", "x backbone", "GFLOP", "FLOP x backbone"],
        rows,
        {"objects": args.objects, "parts": parts},
        [
            output.headline(
                f"backbone floor: {FULL} step / backbone step", value, TARGET, applies=args.profile == "full"
            ),
            output.headline(f"FLOPs (matmul+conv, fwd+bwd): {FULL} step / backbone step", flop_value),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
