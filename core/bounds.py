"""The two bounds the suite adds to every evaluation (spec 'Bounds the suite adds').

- `oracle`: the score of the prediction "the referent's ground-truth mask at the decoder's
  resolution": what perfect grounding reaches at this architecture's output resolution.
- `language_blind`: the expected score of a predictor that knows the referent's class but not
  the sentence: in each (frame, sentence) pair it outputs, uniformly at random, the mask of one
  of the frame's m instances of that class (the referent included), at the same resolution.
  Computed exactly from the ground truth (`core.metrics.summarize_expected`: P@K = mean over
  pairs of the share of candidates with IoU >= K, mean IoU = mean of the candidates' mean IoU,
  overall IoU = Σ E[I] / Σ E[U]). With one candidate per pair it equals the oracle exactly. It
  is absent (never faked) when the classes of a split's videos are unknown (real data).

Both are scored on the evaluation's own path (spec 'Inference', 'Metrics'): a map at the
model's output size S goes through `core.metrics.batch_scores` (bilinear resize to the frame's
original size, foreground where p > θ · max p, I and U against the original-size mask) and
the protocol's summary. The map of an instance (`decoder_maps`): its stored S x S mask,
area-pooled to the decoder's grid (Res2, ceil(S/4): `decoder_size`) and bilinearly upsampled
back to S, as `CVLS.forward` upsamples its decoder's logits.

On the J&F datasets (data.dataset ytvos / mevis) both bounds also have J, F and J&F.

A row's share of the headroom closed is `share_of_headroom`. `store_bounds` computes both bounds
for every evaluated split of the processed store once per (data fingerprint, θ) and caches them
in <outputs>/bounds/<fingerprint>-<θ>.json, so the suite's runs share one computation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.config import Params
from core.data.store import SplitStore, open_split
from core.io import write_json
from core.metrics import batch_scores, iou, summarize_expected
from core.results import SPLITS, data_fingerprint
from core.vos_metrics import JF_DATASETS, batch_boundary_f, summarize_pairs

# the processed store's splits that evaluation scores (the shuffled control is `test` again:
# neither bound reads the sentence)
STORE_SPLITS = tuple(s for s in SPLITS if not s.endswith("_shuffled"))
BATCH = 128  # candidate maps scored at a time (bounds memory at real-data frame sizes)


def decoder_size(input_size: int) -> int:
    """Side of the decoder's grid for S x S inputs: Res2 of a ResNet, after the stride-2 stem
    (7x7, pad 3) and the stride-2 max pool (3x3, pad 1), each ceil(x / 2): ceil(S / 4)."""
    return -(-int(input_size) // 4)


def decoder_maps(masks: Tensor) -> Tensor:
    """[N, S, S] stored masks -> [N, S, S] float maps: area-pooled to the decoder's grid (the
    area interpolation the losses pool with) and bilinearly upsampled back to S like the logits."""
    s = masks.shape[-1]
    pooled = F.adaptive_avg_pool2d(masks[:, None].float(), decoder_size(s))
    return F.interpolate(pooled, size=(s, s), mode="bilinear", align_corners=False)[:, 0]


def candidates(store: SplitStore, sample: int, frame_row: int) -> list[int] | None:
    """Instance ids a language-blind predictor picks from in one pair: the referent first, then
    the frame's other instances of its class; None when the video's classes are unknown."""
    s = store.samples[sample]
    cls = store.instance_class(s.video, s.referent)
    if cls is None:
        return None
    others = [i for i in store.frames[frame_row]["ids"] if i != s.referent]
    return [s.referent, *(i for i in others if store.instance_class(s.video, i) == cls)]


def candidate_scores(
    store: SplitStore, theta: float, boundary: bool = False
) -> tuple[list[list[tuple[int, int]]], list[list[float]], bool]:
    """Per eval pair (`store.eval_pairs()` order), the (I, U) of each candidate's map against the
    referent's original-size mask, the referent's own first (the referent's alone where the
    classes are unknown); with `boundary`, each candidate's DAVIS F likewise (else empty lists);
    and whether the classes of every pair were known."""
    pairs = store.eval_pairs()
    jobs: list[tuple[int, int, int]] = []  # (pair, frame row, candidate instance id)
    known = True
    for p, (sample, row) in enumerate(pairs):
        ids = candidates(store, sample, row)
        known = known and ids is not None
        jobs.extend((p, row, i) for i in (ids or [store.samples[sample].referent]))
    out: list[list[tuple[int, int]]] = [[] for _ in pairs]
    fs: list[list[float]] = [[] for _ in pairs]
    for start in range(0, len(jobs), BATCH):
        chunk = jobs[start : start + BATCH]
        masks = torch.from_numpy(np.stack([store.mask_array[store.instance_rows(row)[i]] for _, row, i in chunk]))
        gts = [torch.from_numpy(store.orig_mask(row, store.samples[pairs[p][0]].referent)) for p, row, _ in chunk]
        maps = decoder_maps(masks)
        for (p, _, _), iu in zip(chunk, batch_scores(maps, gts, theta)):
            out[p].append(iu)
        if boundary:
            for (p, _, _), f in zip(chunk, batch_boundary_f(maps, gts, theta)):
                fs[p].append(f)
    return out, fs, known


def split_bounds(store: SplitStore, theta: float, jf: bool = False) -> dict[str, dict[str, float]]:
    """{"oracle": summary, "language_blind": summary} of one split (`core.metrics.summarize`'s
    keys, and with `jf` J, F and J&F: `core.vos_metrics.summarize_pairs` of each pair's J and F,
    the language-blind one of their expectations over the candidates, exact since the per-
    expression means are linear); language_blind only when every pair's classes are known; {}
    for a split without pairs."""
    scores, fs, known = candidate_scores(store, theta, boundary=jf)
    if not scores:
        return {}
    samples = [sample for sample, _ in store.eval_pairs()]

    def with_jf(summary: dict[str, float], n: int | None) -> dict[str, float]:
        if not jf:
            return summary
        rows = [
            {"sample": s, "iou": float(np.mean([iou(*c) for c in cs[:n]])), "f": float(np.mean(f[:n]))}
            for s, cs, f in zip(samples, scores, fs)
        ]
        return {**summary, **summarize_pairs(rows)}

    out = {"oracle": with_jf(summarize_expected([c[:1] for c in scores]), 1)}
    if known:
        out["language_blind"] = with_jf(summarize_expected(scores), None)
    return out


def share_of_headroom(score: float, blind: float, oracle: float) -> float:
    """(score - blind) / (oracle - blind): the share of the gap between the language-blind bound
    and the oracle that a row closes (spec 'Bounds the suite adds'); NaN when there is no gap."""
    return (score - blind) / (oracle - blind) if oracle != blind else math.nan


def cache_path(params: Params) -> Path:
    """<outputs>/bounds/<data fingerprint>-<θ>.json: a new store or θ is a new file."""
    return params.outputs / "bounds" / f"{data_fingerprint(params)}-{params.eval.threshold:g}.json"


def store_bounds(params: Params) -> dict[str, dict[str, dict[str, float]]]:
    """split -> `split_bounds` for every evaluated split of the processed store (cached)."""
    path = cache_path(params)
    if path.is_file():
        return json.loads(path.read_text())["bounds"]
    theta = params.eval.threshold
    bounds = {}
    for split in STORE_SPLITS:
        if (params.processed / split / "index.json").is_file():
            b = split_bounds(open_split(params.processed, split), theta, params.data.dataset in JF_DATASETS)
            if b:
                bounds[split] = b
    write_json(path, {"fingerprint": data_fingerprint(params), "threshold": theta, "bounds": bounds})
    return bounds
