"""A model's scores on one split: every (frame, sentence) pair's I and U under the protocol.

One function, used by evaluation (`core.evaluate`), by training's per-epoch validation curves
and by the benchmarks: the sigmoid map -> original size -> θ·max rule -> I, U
(`core.metrics.batch_scores`), and on the J&F datasets each pair's boundary F
(`core.vos_metrics.batch_boundary_f`).

The visual map F of a frame does not depend on the sentence (Fig. 3: the sentence enters at the
fusion), and a frame has several sentences (and the shuffled control repeats the test frames),
so `FrameFeatures` computes F once per stored frame and only the fusion and decoder run per pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.config import Params
from core.data.dataset import FrameDataset, collate_frames, to_device
from core.metrics import batch_scores, iou, summarize
from core.model import CVLS
from core.runtime import autocast, channels_last
from core.vos_metrics import batch_boundary_f, summarize_pairs


class FrameFeatures:
    """The visual map F of each stored frame of one model, computed on first use and kept (one
    evaluation: a few thousand maps of C x input/4 x input/4, a few MB at the default size)."""

    def __init__(self, model: CVLS):
        self.model = model
        self._maps: dict[tuple[str, int], Tensor] = {}

    def __call__(self, keys: list[tuple[str, int]], frames: Tensor) -> Tensor:
        """F [N, C, h, w] of normalised frames [N, 3, S, S], one (store folder, frame row) key each."""
        todo = [i for i, k in enumerate(keys) if k not in self._maps]
        first: dict[tuple[str, int], int] = {}  # each new frame once, even if repeated in this batch
        for i in todo:
            first.setdefault(keys[i], i)
        if first:
            self._maps.update(zip(first, self.model.visual(frames[list(first.values())])))
        return torch.stack([self._maps[k] for k in keys])


@torch.no_grad()
def predict(
    model: CVLS,
    ds: FrameDataset,
    params: Params,
    device: torch.device,
    desc: str,
    features: FrameFeatures | None = None,
    boundary: bool = False,
) -> list[dict[str, Any]]:
    """Score every (frame, sentence) pair of `ds`: one row per pair with its meta, I, U and IoU,
    and with `boundary` its DAVIS F as 'f' (the J&F protocol; else f is None).
    Pass one `features` to several calls on the same frames (a split and its shuffled control)."""
    features = features or FrameFeatures(model)
    folder = str(ds.store.folder)
    loader = DataLoader(ds, batch_size=params.eval.batch_size, collate_fn=collate_frames, num_workers=0)
    rows: list[dict[str, Any]] = []
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False):
        meta, gts = batch.pop("meta"), batch.pop("gt")
        b = to_device(batch, device, channels_last(device, params.train))
        keys = [(folder, ds.pairs[m["pair"]][1]) for m in meta]
        with autocast(device, params.train):
            feat = features(keys, b["frames"][:, 0])
            logits = model.segment(feat, model.text(b["tokens"], b["lengths"]), tuple(b["frames"].shape[-2:]))[:, 0]
        probs = torch.sigmoid(logits.float()).cpu()
        theta = params.eval.threshold
        fs = batch_boundary_f(probs, gts, theta) if boundary else [None] * len(gts)
        for (inter, union), f, m in zip(batch_scores(probs, gts, theta), fs, meta):
            rows.append(
                {
                    **{k: m[k] for k in ("pair", "sample", "video", "frame", "text")},
                    "inter": inter,
                    "union": union,
                    "iou": iou(inter, union),
                    "f": f,
                }
            )
    return rows


def summarize_rows(rows: Sequence[Mapping[str, Any]], jf: bool) -> dict[str, float]:
    """The protocol's summary of scored pairs (`core.metrics.summarize` of their I, U), and with
    `jf` (rows scored with boundary=True) their J, F and J&F (`core.vos_metrics.summarize_pairs`)."""
    out = summarize([r["inter"] for r in rows], [r["union"] for r in rows])
    return {**out, **summarize_pairs(rows)} if jf else out
