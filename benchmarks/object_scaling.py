"""Benchmark 3 - scaling with objects per clip: step time and contrastive+RHIC time for K = 2..16.

What: for K objects per clip (synthetic batches that differ only in their masks) the full CVLS
training step (CCL+RHIC+LCF), and separately its contrastive part alone: core.losses.
contrastive_loss (region weights, RHIC selection, pooling, projection, InfoNCE) forward +
backward on the network output of the same batch. All candidates interleaved in one process.
Target: the contrastive + RHIC part grows no worse than linearly in K, i.e.
t(16) / t(2) <= 8 (vectorised: no Python loop per instance or per frame); also reported: the
log-log slope of t against K (1 = linear).

    python benchmarks/object_scaling.py                    # CPU default profile (~30 s)
    python benchmarks/object_scaling.py --profile full     # ResNet-50 at 320 (batch 1, 3 reps on CPU, ~1.5 min)
    python benchmarks/object_scaling.py --objects-list 2 4 8 16 32
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cli, fixtures, output, timing  # noqa: E402
from core.losses import contrastive_loss  # noqa: E402
from core.model import CVLS, Output  # noqa: E402
from core.runtime import autocast  # noqa: E402

FULL = "CCL+RHIC+LCF"


class ContrastivePart:
    """contrastive_loss forward + backward on a fixed network output (leaf tensors), as in the step."""

    def __init__(self, ctx: cli.Context, model: CVLS, batch: dict[str, torch.Tensor]):
        self.ctx, self.model, self.batch = ctx, model, batch
        with torch.no_grad(), autocast(ctx.device, ctx.params.train):
            out = model(batch["frames"], batch["tokens"], batch["lengths"])
        leaf = lambda x: None if x is None else x.detach().clone().requires_grad_(True)  # noqa: E731
        self.out = Output(
            logits=out.logits.detach(), features=leaf(out.features), sentence=leaf(out.sentence), gate=leaf(out.gate)
        )

    def __call__(self) -> None:
        self.model.zero_grad(set_to_none=True)
        for x in (self.out.features, self.out.sentence, self.out.gate):
            if x is not None:
                x.grad = None
        with autocast(self.ctx.device, self.ctx.params.train):
            loss = contrastive_loss(self.model, self.out, self.batch, self.ctx.params.loss)
        loss.backward()


def slope(ks: list[int], ts: list[float]) -> float:
    """Exponent p of t ~ K^p (least squares in log-log)."""
    return float(np.polyfit(np.log(ks), np.log(ts), 1)[0])


def main() -> int:
    p = cli.parser(__doc__, reps=10, cpu_full_reps=3)
    p.add_argument(
        "--objects-list", type=int, nargs="+", default=[2, 4, 8, 16], help="objects per clip (default 2 4 8 16)"
    )
    args = p.parse_args()
    ctx = cli.Context(args)
    params = ctx.params.with_variant(FULL)
    ctx.params = params
    ks = sorted(args.objects_list)
    cands = {}
    for k in ks:
        batch = fixtures.synthetic_batch(params, ctx.batch_size, k, ctx.device, ctx.channels_last)
        step = fixtures.make_step(params, ctx, batch)
        cands[f"step K={k}"] = step
        cands[f"ccl K={k}"] = ContrastivePart(ctx, step.model, batch)
    times = timing.interleaved(cands, args.reps, args.warmup, ctx.device)
    med = {n: timing.stats(t)["median_s"] for n, t in times.items()}
    k0, k1 = ks[0], ks[-1]
    rows, per_k = [], {}
    for k in ks:
        s, c = f"step K={k}", f"ccl K={k}"
        per_k[k] = {
            "step": {**timing.stats(times[s]), "times_s": times[s]},
            "ccl": {**timing.stats(times[c]), "times_s": times[c]},
            "step_ratio": timing.ratio(times, s, f"step K={k0}"),
            "ccl_ratio": timing.ratio(times, c, f"ccl K={k0}"),
        }
        rows.append(
            [k, 1e3 * med[s], per_k[k]["step_ratio"], 1e3 * med[c], per_k[k]["ccl_ratio"], k / k0, med[c] / med[s]]
        )
    ccl_growth, step_growth, bound = per_k[k1]["ccl_ratio"], per_k[k1]["step_ratio"], k1 / k0
    ccl_slope = slope(ks, [med[f"ccl K={k}"] for k in ks])
    output.finish(
        "object_scaling",
        ctx,
        f"Benchmark 3: scaling with objects per clip ({FULL})",
        ["K", "step ms", f"step x K={k0}", "ccl ms", f"ccl x K={k0}", "linear", "ccl share"],
        rows,
        {
            "objects": ks,
            "per_k": per_k,
            "linear_bound": bound,
            "step_loglog_slope": slope(ks, [med[f"step K={k}"] for k in ks]),
        },
        [
            output.headline(f"contrastive+RHIC t(K={k1}) / t(K={k0})", ccl_growth, bound),
            output.headline("contrastive+RHIC log-log slope in K (1 = linear)", ccl_slope, 1.0, unit=""),
            output.headline(f"whole step t(K={k1}) / t(K={k0})", step_growth),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
