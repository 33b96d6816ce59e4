"""Benchmark 9 - evaluation: scored (frame, sentence) pairs per second, per-sample loop vs batched.

What: the test split of the benchmark store scored by (a) the per-sample loop evaluation ran
before (for every sample: resize its map to the frame's size, θ·max, count I and U) and (b)
`core.metrics.batch_scores`, the function evaluation runs now (the same three steps as tensor
ops over each group of samples of one original size). Timed twice, interleaved: the scoring
alone, on the sigmoid maps of a model over the whole split (computed once), and the whole
`core.scoring.predict`-shaped pass (loader + model forward + scoring). The two give identical
integers I and U (checked here on every sample, and by tests/test_metrics.py).
Target: scoring >= 5x pairs/s.

    python benchmarks/evaluation.py          # CPU default profile (~1 min, + ~40 s once to make the data)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cli, fixtures, output, stores, timing  # noqa: E402
from core.checkpoint import load_vocab  # noqa: E402
from core.data.dataset import FrameDataset, collate_frames, to_device  # noqa: E402
from core.data.store import open_split  # noqa: E402
from core.metrics import batch_scores, binarize, intersection_union, resize_to  # noqa: E402
from core.runtime import autocast  # noqa: E402

TARGET = 5.0


def per_sample_scores(probs: torch.Tensor, gts: list[torch.Tensor], theta: float) -> list[tuple[int, int]]:
    """The scoring loop of evaluation before batch_scores (core/evaluate.py at 9d7e0cc)."""
    return [intersection_union(binarize(resize_to(p, tuple(g.shape)), theta), g) for p, g in zip(probs, gts)]


SCORERS = {"per-sample loop": per_sample_scores, "batch_scores": batch_scores}


def main() -> int:
    args = cli.parser(__doc__, reps=5, batch=False).parse_args()
    ctx = cli.Context(args)
    params = stores.ensure_store(stores.data_params(ctx))
    theta = params.eval.threshold
    vocab = load_vocab(params)
    ds = FrameDataset(open_split(params.processed, "test"), vocab, params.data)
    loader = DataLoader(ds, batch_size=params.eval.batch_size, collate_fn=collate_frames, num_workers=0)
    model = fixtures.build_model(params, ctx.device, ctx.channels_last, vocab=vocab).eval()

    def forward(batch: dict[str, Any]) -> torch.Tensor:
        b = to_device({k: v for k, v in batch.items() if k not in ("meta", "gt")}, ctx.device)
        with torch.no_grad(), autocast(ctx.device, params.train):
            return torch.sigmoid(model(b["frames"], b["tokens"], b["lengths"]).logits[:, 0].float()).cpu()

    batches = [(forward(b), b["gt"]) for b in loader]  # the maps, for the scoring-alone timing
    for probs, gts in batches:
        assert batch_scores(probs, gts, theta) == per_sample_scores(probs, gts, theta)
    n = sum(len(g) for _, g in batches)

    def scoring(fn: Any) -> Any:
        return lambda: [fn(p, g, theta) for p, g in batches]

    def whole(fn: Any) -> Any:
        return lambda: [fn(forward(b), b["gt"], theta) for b in loader]

    cands = {f"scoring: {k}": scoring(f) for k, f in SCORERS.items()}
    cands |= {f"whole pass: {k}": whole(f) for k, f in SCORERS.items()}
    times = timing.interleaved(cands, args.reps, args.warmup, ctx.device)
    rows = []
    for name in cands:
        s = timing.stats(times[name])
        rows.append([name, 1e3 * s["median_s"], n / s["median_s"]])
    score_x = timing.ratio(times, "scoring: per-sample loop", "scoring: batch_scores")
    whole_x = timing.ratio(times, "whole pass: per-sample loop", "whole pass: batch_scores")
    output.finish(
        "evaluation",
        ctx,
        f"Benchmark 9: evaluation of the test split ({n} pairs, eval.batch_size {params.eval.batch_size})",
        ["candidate", "median ms", "pairs/s"],
        rows,
        {"pairs": n, "times_s": times, "whole_pass_speedup": whole_x},
        [
            output.headline(
                "evaluation scoring: batch_scores pairs/s / per-sample loop pairs/s", score_x, TARGET, at_most=False
            )
        ],
        [f"whole pass (loader + model + scoring): batch_scores {whole_x:.2f}x the per-sample loop"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
