"""A model's scores on one split: every (frame, sentence) pair's I and U under the protocol.

One function, used by evaluation (`core.evaluate`), by training's per-epoch validation curves
and by the benchmarks: the sigmoid map -> original size -> θ·max rule -> I, U
(`core.metrics.batch_scores`), and on the J&F datasets each pair's boundary F
(`core.vos_metrics.batch_boundary_f`).

The visual map F of a frame does not depend on the sentence (Fig. 3: the sentence enters at the
fusion), and a frame has several sentences (and the shuffled control repeats the test frames),
so `Features` computes F once per stored frame, and the sentence vector once per distinct
sentence; only the fusion and decoder run per pair.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.config import Params
from core.data.dataset import FrameDataset, collate_frames, to_device
from core.metrics import batch_counts, grounding, iou, summarize
from core.model import CVLS
from core.runtime import autocast, channels_last
from core.vos_metrics import batch_boundary_f, summarize_pairs


class Memo:
    """Rows of `fn`, one per key, computed on first use and kept: `fn` runs only on the inputs'
    rows whose key is new (each new key once, even if repeated in one call)."""

    def __init__(self, fn: Callable[..., Tensor]):
        self.fn = fn
        self.rows: dict[Hashable, Tensor] = {}

    def missing(self, keys: Sequence[Hashable]) -> dict[Hashable, int]:
        """Each key not yet computed -> the position of its first occurrence in `keys`."""
        first: dict[Hashable, int] = {}
        for i, k in enumerate(keys):
            if k not in self.rows:
                first.setdefault(k, i)
        return first

    def __call__(self, keys: Sequence[Hashable], *inputs: Tensor) -> Tensor:
        """fn's rows [N, ...] for N keys; `inputs` are fn's arguments, N rows each (none needed
        when every key is already computed)."""
        first = self.missing(keys)
        if first:
            idx = list(first.values())
            self.rows.update(zip(first, self.fn(*(x[idx] for x in inputs))))
        return torch.stack([self.rows[k] for k in keys])


class Features:
    """The two halves of one model's forward that see only one side of a pair, each computed once:
    the visual map F of each stored frame (W x input/4 x input/4 on the device; with model.merge
    conv, W = C: ~9 MB per thousand frames at the default size, 3.3 MB per frame in bf16 at the full
    size; with concat 4x both) and the sentence vector s of each distinct sentence (Eq. 8; a
    sentence is annotated on several frames, and the shuffled control reuses the split's sentences)."""

    def __init__(self, model: CVLS):
        self.frames = Memo(model.visual)  # key: (store folder, frame row)
        self.sentences = Memo(model.text)  # key: the sentence's token ids


@torch.no_grad()
def predict(
    model: CVLS,
    ds: FrameDataset,
    params: Params,
    device: torch.device,
    desc: str,
    features: Features | None = None,
    boundary: bool = False,
) -> list[dict[str, Any]]:
    """Score every (frame, sentence) pair of `ds`: one row per pair with its meta, I, U and IoU,
    and with `boundary` its DAVIS F as 'f' (the J&F protocol; else f is None).
    Pass one `features` to several calls on the same frames (a split and its shuffled control)."""
    features = features or Features(model)
    folder = str(ds.store.folder)
    loader = DataLoader(ds, batch_size=params.eval.batch_size, collate_fn=collate_frames, num_workers=0)
    rows: list[dict[str, Any]] = []
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False):
        meta, gts, targets = batch.pop("meta"), batch.pop("gt"), batch.pop("targets")
        frames = [(folder, ds.pairs[m["pair"]][1]) for m in meta]
        # only the frames new to the memo are copied, normalised and encoded (the rest are read from it)
        new = list(features.frames.missing(frames).values())
        size = tuple(batch["frames"].shape[-2:])
        b = to_device({**batch, "frames": batch["frames"][new]}, device, channels_last(device, params.train))
        sentences = [tuple(t[:n].tolist()) for t, n in zip(batch["tokens"], batch["lengths"])]
        with autocast(device, params.train):
            if new:
                features.frames([frames[i] for i in new], b["frames"][:, 0])
            feat = features.frames(frames)
            s = features.sentences(sentences, b["tokens"], b["lengths"])
            logits = model.segment(feat, s, size)[:, 0]
        probs = torch.sigmoid(logits.float()).cpu()
        theta = params.eval.threshold
        fs = batch_boundary_f(probs, gts, theta) if boundary else [None] * len(gts)
        counts = batch_counts(probs, targets, theta)  # per pair: the referent, then the frame's other actors
        for ((inter, union), *other), f, m in zip(counts, fs, meta):
            rows.append(
                {
                    **{k: m[k] for k in ("pair", "sample", "video", "frame", "text")},
                    "inter": inter,
                    "union": union,
                    "iou": iou(inter, union),
                    "f": f,
                    # the prediction's best IoU with another actor of the frame (grounding); None: no other
                    "other_iou": max(iou(i, u) for i, u in other) if other else None,
                }
            )
    return rows


def summarize_rows(rows: Sequence[Mapping[str, Any]], jf: bool) -> dict[str, float]:
    """The protocol's summary of scored pairs (`core.metrics.summarize` of their I, U), their
    grounding (`core.metrics.grounding`, when the rows carry other_iou), and with `jf` (rows scored
    with boundary=True) their J, F and J&F (`core.vos_metrics.summarize_pairs`)."""
    out = summarize([r["inter"] for r in rows], [r["union"] for r in rows])
    if "other_iou" in rows[0]:  # rows scored before grounding existed lack it
        out |= grounding([iou(r["inter"], r["union"]) for r in rows], [r["other_iou"] for r in rows])
    return {**out, **summarize_pairs(rows)} if jf else out
