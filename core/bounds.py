"""The two bounds the suite adds to every evaluation (docs/method.md, 'Bounds the suite adds').

- `oracle`: the score of the prediction "the referent's ground-truth mask at the decoder's
  resolution": what perfect grounding reaches at this architecture's output resolution.
- `language_blind`: the expected score of a predictor that knows the referent's class but not
  the sentence: in each (frame, sentence) pair it outputs, uniformly at random, the mask of one
  of the frame's m instances of that class (the referent included), at the same resolution.
  Computed exactly from the ground truth (`core.metrics.summarize_expected`: P@K = mean over
  pairs of the share of candidates with IoU >= K, mean IoU = mean of the candidates' mean IoU,
  overall IoU = Σ E[I] / Σ E[U]). With one candidate per pair it equals the oracle exactly. It
  is absent (never faked) when the classes of a split's videos are unknown (real data).

Both are scored on the evaluation's own path (docs/method.md, 'Inference and the metrics
protocol'): a map at the model's output size S goes through `core.metrics.batch_scores`
(bilinear resize to the frame's original size, foreground where p > θ · max p, I and U against
the original-size mask) and the protocol's summary. The map of an instance (`decoder_maps`): its
stored S x S mask, area-pooled to the decoder's grid (Res2, ceil(S/4): `decoder_size`) and
bilinearly upsampled back to S, as `CVLS.forward` upsamples its decoder's logits.

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
from core.metrics import batch_scores, iou, sample_map, summarize_expected
from core.results import SPLITS, data_fingerprint
from core.vos_metrics import batch_boundary_f, summarize_pairs

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
    the frame's other instances of its class; None when the video's classes are unknown. In a
    frame without the referent (an absent pair, J&F datasets) the class's instances in view, or
    the referent alone (an empty prediction) when there are none."""
    s = store.samples[sample]
    cls = store.instance_class(s.video, s.referent)
    if cls is None:
        return None
    ids = store.frames[frame_row]["ids"]
    same = [i for i in ids if i != s.referent and store.instance_class(s.video, i) == cls]
    if s.referent in ids:
        return [s.referent, *same]
    return same or [s.referent]


def _instance_map(store: SplitStore, frame_row: int, instance_id: int) -> np.ndarray:
    """The stored S x S mask of an instance in a frame; all zero where it is not in the frame."""
    rows = store.instance_rows(frame_row)
    if instance_id in rows:
        return store.mask_array[rows[instance_id]]
    return np.zeros(store.mask_array.shape[1:], store.mask_array.dtype)


def candidate_scores(
    store: SplitStore, theta: float, boundary: bool = False
) -> tuple[list[tuple[int, int]], list[list[tuple[int, int]]], list[float], list[list[float]], bool]:
    """Per eval pair (`store.eval_pairs()` order), against the referent's original-size mask (empty
    in an absent pair): the (I, U) of the referent's own map (the oracle's) and of each language-
    blind candidate's (`candidates`; the referent's alone where the classes are unknown); with
    `boundary`, their DAVIS F likewise (else empty lists); and whether every pair's classes were known."""
    pairs = store.eval_pairs()
    jobs: list[tuple[int, int, int]] = []  # (pair, frame row, instance id): the referent first
    blind_ids: list[list[int]] = []
    known = True
    for p, (sample, row) in enumerate(pairs):
        referent = store.samples[sample].referent
        ids = candidates(store, sample, row)
        known = known and ids is not None
        ids = ids or [referent]
        blind_ids.append(ids)
        jobs.extend((p, row, i) for i in [referent, *(i for i in ids if i != referent)])
    scored: list[dict[int, tuple[int, int]]] = [{} for _ in pairs]
    fscored: list[dict[int, float]] = [{} for _ in pairs]
    for start in range(0, len(jobs), BATCH):
        chunk = jobs[start : start + BATCH]
        masks = torch.from_numpy(np.stack([_instance_map(store, row, i) for _, row, i in chunk]))
        gts = [torch.from_numpy(store.orig_mask(row, store.samples[pairs[p][0]].referent)) for p, row, _ in chunk]
        maps = decoder_maps(masks)
        for (p, _, i), iu in zip(chunk, batch_scores(maps, gts, theta)):
            scored[p][i] = iu
        if boundary:
            for (p, _, i), f in zip(chunk, batch_boundary_f(maps, gts, theta)):
                fscored[p][i] = f
    referents = [store.samples[sample].referent for sample, _ in pairs]
    oracle = [sc[r] for sc, r in zip(scored, referents)]
    blind = [[sc[i] for i in ids] for sc, ids in zip(scored, blind_ids)]
    oracle_f = [fs[r] for fs, r in zip(fscored, referents)] if boundary else []
    blind_f = [[fs[i] for i in ids] for fs, ids in zip(fscored, blind_ids)] if boundary else []
    return oracle, blind, oracle_f, blind_f, known


def split_bounds(store: SplitStore, theta: float, jf: bool = False) -> dict[str, dict[str, float]]:
    """{"oracle": summary, "language_blind": summary} of one split (`core.metrics.summarize`'s
    keys, and with `jf` J, F and J&F: `core.vos_metrics.summarize_pairs` of each pair's J and F,
    the language-blind one of their expectations over the candidates, exact since the per-
    expression means are linear); language_blind only when every pair's classes are known; {}
    for a split without pairs."""
    oracle, blind, oracle_f, blind_f, known = candidate_scores(store, theta, boundary=jf)
    if not oracle:
        return {}
    samples = [sample for sample, _ in store.eval_pairs()]

    def with_jf(summary: dict[str, float], scores: list[list[tuple[int, int]]], fs: list[list[float]]) -> dict:
        if not jf:
            return summary
        rows = [
            {"sample": s, "iou": float(np.mean([iou(*c) for c in cs])), "f": float(np.mean(f))}
            for s, cs, f in zip(samples, scores, fs)
        ]
        return {**summary, **summarize_pairs(rows)}

    out = {"oracle": with_jf(summarize_expected([[c] for c in oracle]), [[c] for c in oracle], [[f] for f in oracle_f])}
    if known:
        out["language_blind"] = with_jf(summarize_expected(blind), blind, blind_f)
    return out


def pair_bounds(store: SplitStore, theta: float, jf: bool = False) -> list[dict[str, object]]:
    """Per eval pair of `store` (`store.eval_pairs()` order, the `pair` of per_sample.csv) and bound,
    what the bound scores there: the oracle's I, U, IoU and share of the mAP thresholds
    (`core.metrics.sample_map`), and the language-blind predictor's expectations of each over its
    candidates (only when every pair's classes are known); with `jf` their boundary F too. Their
    means over a split are `split_bounds`' numbers; per pair, they give the bounds an interval over
    the test videos (reports.analysis)."""
    oracle, blind, oracle_f, blind_f, known = candidate_scores(store, theta, boundary=jf)
    rows: list[dict[str, object]] = []
    for p, (sample, row) in enumerate(store.eval_pairs()):  # the video as per_sample.csv names it: its id
        meta = {"pair": p, "sample": sample, "video": store.videos[store.frames[row]["video"]]["id"]}
        picks = {"oracle": ([oracle[p]], [oracle_f[p]] if jf else [])}
        if known:
            picks["language_blind"] = (blind[p], blind_f[p] if jf else [])
        for bound, (ius, fs) in picks.items():
            rows.append(
                {
                    **meta,
                    "bound": bound,
                    "inter": float(np.mean([i for i, _ in ius])),
                    "union": float(np.mean([u for _, u in ius])),
                    "iou": float(np.mean([iou(i, u) for i, u in ius])),
                    "map": float(np.mean([sample_map(i, u) for i, u in ius])),
                    "f": float(np.mean(fs)) if fs else None,
                }
            )
    return rows


def share_of_headroom(score: float, blind: float, oracle: float) -> float:
    """(score - blind) / (oracle - blind): the share of the gap between the language-blind bound
    and the oracle that a row closes (docs/method.md, 'Bounds the suite adds'); NaN when there is no gap."""
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
            b = split_bounds(open_split(params.processed, split), theta, params.dataset_spec.metrics.davis)
            if b:
                bounds[split] = b
    write_json(path, {"fingerprint": data_fingerprint(params), "threshold": theta, "bounds": bounds})
    return bounds
