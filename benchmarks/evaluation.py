"""Benchmark 9 - evaluation: scored (frame, sentence) pairs per second, before vs now.

What: the test split and its shuffled-sentence control (what evaluation scores on the frames of
the test split) of the benchmark store, by
  (before) evaluation as it was at 9d7e0cc: its model (torchvision's ResNet-10 widths; today's
      default is half as wide, model.backbone_widths), the whole forward on every pair in fp32
      NCHW, in batches of 16 pairs (its eval.batch_size), then a Python loop per sample (resize its
      map to the frame's size, θ·max, count I and U);
  (before's path) the same on today's model in fp32: what the path alone gained;
  (now) `core.scoring.predict`, what evaluation runs: the visual map of each frame and the
      vector of each distinct sentence computed once (`Features`, shared by the split and its
      control), the fusion and decoder per pair, and `core.metrics.batch_scores` (the three
      scoring steps as tensor ops over each group of samples of one original size), in the
      default's precision and memory format (train.cpu_bf16: bf16 + channels_last on a CPU with
      native bf16), in batches of eval.batch_size pairs.
Also the scoring alone on precomputed maps (loop vs batch_scores). Candidates interleaved. In one
precision the two paths give identical integers I and U (checked here on every pair, and by
tests/test_scoring.py and tests/test_metrics.py); across precisions the share of pairs with the
same I and U and the largest IoU difference are printed. Target: evaluation >= 5x pairs/s.

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
from core.config import Params  # noqa: E402
from core.data.dataset import FrameDataset, collate_frames, derangement, to_device  # noqa: E402
from core.data.store import open_split  # noqa: E402
from core.metrics import batch_scores, binarize, intersection_union, iou, resize_to  # noqa: E402
from core.runtime import autocast, channels_last, precision  # noqa: E402
from core.scoring import Features, predict  # noqa: E402

TARGET = 5.0
BEFORE_BATCH = 16  # eval.batch_size at 9d7e0cc


def per_sample_scores(probs: torch.Tensor, gts: list[torch.Tensor], theta: float) -> list[tuple[int, int]]:
    """The scoring loop of evaluation before batch_scores (core/evaluate.py at 9d7e0cc)."""
    return [intersection_union(binarize(resize_to(p, tuple(g.shape)), theta), g) for p, g in zip(probs, gts)]


SCORERS = {"per-sample loop": per_sample_scores, "batch_scores": batch_scores}


def precision_agreement(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> dict[str, float]:
    """How far two precisions' scores of the same pairs are apart: share of identical (I, U), largest |ΔIoU|."""
    diffs = [abs(iou(*x) - iou(*y)) for x, y in zip(a, b, strict=True)]
    return {"same_share": sum(x == y for x, y in zip(a, b)) / len(a), "max_iou_diff": max(diffs, default=0.0)}


def main() -> int:
    args = cli.parser(__doc__, reps=5, batch=False).parse_args()
    ctx = cli.Context(args)
    params = stores.ensure_store(stores.data_params(ctx))
    theta = params.eval.threshold
    vocab = load_vocab(params)
    store = open_split(params.processed, "test")
    splits = [
        FrameDataset(store, vocab, params.data),
        FrameDataset(store, vocab, params.data, text_from=derangement(len(store.samples), params.train.seed)),
    ]

    def loaders(batch_size: int) -> list[DataLoader]:
        return [DataLoader(ds, batch_size=batch_size, collate_fn=collate_frames) for ds in splits]

    # 9d7e0cc: fp32, NCHW on the CPU, torchvision's ResNet-10 widths (its own random weights: timed only)
    old = params.replace(**{"train.cpu_bf16": False, "model.backbone_widths": None})
    fp32 = params.replace(**{"train.cpu_bf16": False})  # today's model in fp32: the precisions' agreement
    model = fixtures.build_model(params, ctx.device, ctx.channels_last, vocab=vocab).eval()
    old_model = fixtures.build_model(old, ctx.device, channels_last(ctx.device, old.train), vocab=vocab).eval()
    fp32_model = fixtures.build_model(fp32, ctx.device, channels_last(ctx.device, fp32.train), vocab=vocab).eval()
    fp32_model.load_state_dict(model.state_dict())

    def forward(net: torch.nn.Module, p: Params, batch: dict[str, Any]) -> torch.Tensor:
        b = to_device(
            {k: v for k, v in batch.items() if k not in ("meta", "gt")}, ctx.device, channels_last(ctx.device, p.train)
        )
        with torch.no_grad(), autocast(ctx.device, p.train):
            return torch.sigmoid(net(b["frames"], b["tokens"], b["lengths"]).logits[:, 0].float()).cpu()

    def whole_forward(net: torch.nn.Module, p: Params, batch_size: int) -> list[tuple[int, int]]:
        return [
            s
            for loader in loaders(batch_size)
            for b in loader
            for s in per_sample_scores(forward(net, p, b), b["gt"], theta)
        ]

    def before() -> list[tuple[int, int]]:
        return whole_forward(old_model, old, BEFORE_BATCH)

    def now() -> list[tuple[int, int]]:
        features = Features(model)
        rows = [r for ds in splits for r in predict(model, ds, params, ctx.device, "eval", features)]
        return [(r["inter"], r["union"]) for r in rows]

    got = now()
    assert got == whole_forward(model, params, params.eval.batch_size), (
        "in one precision the two evaluation paths give identical I and U"
    )
    agreement = precision_agreement(whole_forward(fp32_model, fp32, BEFORE_BATCH), got)
    batches = [
        (forward(model, params, b), b["gt"]) for b in loaders(params.eval.batch_size)[0]
    ]  # the maps, for the scoring-alone timing
    n = sum(len(ds) for ds in splits)
    n_scoring = sum(len(g) for _, g in batches)

    def scoring(fn: Any) -> Any:
        return lambda: [fn(p, g, theta) for p, g in batches]

    cands = {
        "evaluation: before": before,
        "evaluation: before's path, today's model": lambda: whole_forward(fp32_model, fp32, BEFORE_BATCH),
        "evaluation: now": now,
    }
    cands |= {f"scoring alone: {k}": scoring(f) for k, f in SCORERS.items()}
    times = timing.interleaved(cands, args.reps, args.warmup, ctx.device)
    rows = []
    for name in cands:
        s = timing.stats(times[name])
        pairs = n if name.startswith("evaluation") else n_scoring
        rows.append([name, 1e3 * s["median_s"], pairs / s["median_s"]])
    eval_x = timing.ratio(times, "evaluation: before", "evaluation: now")
    path_x = timing.ratio(times, "evaluation: before's path, today's model", "evaluation: now")
    score_x = timing.ratio(times, "scoring alone: per-sample loop", "scoring alone: batch_scores")
    output.finish(
        "evaluation",
        ctx,
        f"Benchmark 9: evaluation of the test split and its shuffled control ({n} pairs, "
        f"{len({r for _, r in store.eval_pairs()})} frames, "
        f"eval.batch_size {params.eval.batch_size} now, {BEFORE_BATCH} before)",
        ["candidate", "median ms", "pairs/s"],
        rows,
        {
            "pairs": n,
            "times_s": times,
            "scoring_speedup": score_x,
            "path_speedup": path_x,
            "precision": precision(ctx.device, params.train),
        }
        | agreement,
        [output.headline("evaluation pairs/s: now / before", eval_x, TARGET, at_most=False)],
        [
            f"scoring alone: batch_scores {score_x:.2f}x the per-sample loop",
            f"the path alone (today's model, before's path in fp32 -> now): {path_x:.2f}x",
            f"now in {precision(ctx.device, params.train)} vs before's path in fp32 (same weights): "
            f"{agreement['same_share']:.1%} of pairs with identical I and U, largest IoU difference "
            f"{agreement['max_iou_diff']:.3f}",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
