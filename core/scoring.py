"""A model's scores on one split: every (frame, sentence) pair's I and U under the protocol.

One function, used by evaluation (`core.evaluate`), by training's per-epoch validation curves
and by the benchmarks: the sigmoid map -> original size -> θ·max rule -> I, U
(`core.metrics.batch_scores`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.config import Params
from core.data.dataset import FrameDataset, collate_frames, to_device
from core.metrics import batch_scores, iou
from core.model import CVLS
from core.runtime import autocast


@torch.no_grad()
def predict(model: CVLS, ds: FrameDataset, params: Params, device: torch.device, desc: str) -> list[dict[str, Any]]:
    """Score every (frame, sentence) pair of `ds`: one row per pair with its meta, I, U and IoU."""
    loader = DataLoader(ds, batch_size=params.eval.batch_size, collate_fn=collate_frames, num_workers=0)
    rows: list[dict[str, Any]] = []
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False):
        meta, gts = batch.pop("meta"), batch.pop("gt")
        b = to_device(batch, device)
        with autocast(device, params.train):
            logits = model(b["frames"], b["tokens"], b["lengths"]).logits[:, 0]
        probs = torch.sigmoid(logits.float()).cpu()
        for (inter, union), m in zip(batch_scores(probs, gts, params.eval.threshold), meta):
            rows.append(
                {
                    **{k: m[k] for k in ("pair", "sample", "video", "frame", "text")},
                    "inter": inter,
                    "union": union,
                    "iou": iou(inter, union),
                }
            )
    return rows
