"""Language-free pretext training of the backbone: the offline stand-in for ImageNet weights.

    python -m core.pretext [--params params.yaml] [--set key=value ...]     # DVC stage `pretrain`

The paper starts ResNet-50 from ImageNet. Nothing can be downloaded here, and from random
init the synthetic default does not learn to use the sentence within its CPU budget (the
numbers are in README.md). With `model.init: pretext` this stage first trains the visual
encoder (ResNet + SEM + top-down merge) on the training clips *without their sentences*, on
two targets every A2D-format dataset has, its instance masks:

    objectness  Eq. 3's BCE with the union of all instance masks as the target;
    identity    InfoNCE across consecutive frames: an instance's pooled feature (Eq. 1
                pooling) in frame t must pick the same instance in frame t+1 among every
                instance of the batch there, and back (temperature pretrain.tau).

Telling instances apart forces the features to encode colour, shape, size, motion and
position, which is what the sentences talk about, without any sentence. As with ImageNet,
only the ResNet is kept: `outputs/pretrain/backbone.pt` is a torchvision ResNet state_dict
that every run loads through the same path as an ImageNet file. The stage is one tracked
MLflow run trained by the suite's one loop (`core.loop.fit`, checkpointed every epoch by its
`core.hooks.Checkpointer`: a killed stage resumes from its last checkpoint) and reused when its
config and data are unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from core import results, tracking
from core.backbone import build_backbone
from core.checkpoint import load_vocab, save_checkpoint
from core.cli import params_from, parser, run_main
from core.config import Params
from core.hooks import Checkpointer, LRSchedule
from core.identity import identity
from core.io import atomic_path, write_json
from core.loop import Objective, Schedule, clip_loader, fit
from core.losses import instance_features, region_weights, segmentation_loss
from core.model import ProjectionHead, VisualEncoder
from core.results import data_fingerprint
from core.runtime import Dist, environment, on_device, pick_device, seed_everything

log = logging.getLogger("cvls")


class PretextHead(nn.Module):
    """Objectness logit (1×1 conv on F) and an instance projection (same MLP shape as g(·))."""

    def __init__(self, channels: int, hidden: int, out_dim: int):
        super().__init__()
        self.objectness = nn.Conv2d(channels, 1, 1)
        self.project = ProjectionHead(channels, hidden, out_dim)


def cross_frame_nce(z: Tensor, valid: Tensor, tau: float) -> Tensor:
    """Identity InfoNCE between consecutive frames, both directions, vectorised over frames.

    z [B,T,K,D] L2-normalised instance embeddings, valid [B,T,K]. For frame pair (t, t+1),
    instance (b,k) of frame t is the anchor, (b,k) in frame t+1 the positive, every other valid
    instance of the batch in frame t+1 a negative; then the same from t+1 back to t. Mean over
    the (pair, instance) rows valid in both frames; 0 when there are none (T = 1).
    """
    if z.shape[1] < 2:
        return z.sum() * 0.0
    a = z[:, :-1].transpose(0, 1).flatten(1, 2).float()  # [T-1, B·K, D]
    p = z[:, 1:].transpose(0, 1).flatten(1, 2).float()
    va = valid[:, :-1].transpose(0, 1).flatten(1)  # [T-1, B·K]
    vp = valid[:, 1:].transpose(0, 1).flatten(1)
    logits = torch.einsum("tnd,tmd->tnm", a, p) / tau
    fwd = logits.masked_fill(~vp[:, None, :], float("-inf"))
    bwd = logits.transpose(1, 2).masked_fill(~va[:, None, :], float("-inf"))
    diag = logits.diagonal(dim1=1, dim2=2)
    loss = (fwd.logsumexp(-1) + bwd.logsumexp(-1)) / 2 - diag  # [T-1, B·K]
    pair = va & vp
    loss = torch.where(pair, loss, torch.zeros_like(loss))
    return loss.sum() / pair.sum().clamp_min(1)


def pretext_loss(
    visual: VisualEncoder, head: PretextHead, batch: dict[str, Tensor], tau: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """objectness + identity on one clip batch (the training batch contract, sentences unused)."""
    frames, masks = batch["frames"], batch["masks"]
    b, t, _, s, _ = frames.shape
    feat = visual(frames.flatten(0, 1))  # [B·T, W, h, w]: F, W its width (model.merge)
    logit = F.interpolate(head.objectness(feat), size=(s, s), mode="bilinear", align_corners=False)
    # per-pixel mean: loss.seg_reduction is a reading of the paper's Eq. 3, not of this pretext
    obj = segmentation_loss(logit.view(b, t, s, s), masks.amax(dim=2), batch["frame_valid"], "mean")
    regions = region_weights(masks, feat.shape[-2:])[:, :, :-1]  # instances, no background
    z = head.project(instance_features(feat.unflatten(0, (b, t)), regions))  # [B,T,K,D]
    valid = batch["present"] & (regions.sum(dim=(-2, -1)) > 0) & batch["frame_valid"][:, :, None]
    ident = cross_frame_nce(z, valid, tau)
    return obj + ident, {"objectness": obj.detach(), "identity": ident.detach()}


# the keys the pretext reads (its section, the data, the part of the model it trains) and its CPU
# precision (train.cpu_bf16 changes its numbers as a run's)
PRETEXT = (
    "pretrain",
    "data",
    "model.backbone",
    "model.backbone_widths",
    "model.merge",
    "model.channels",
    "model.proj_hidden",
    "model.proj_dim",
    "train.cpu_bf16",
)


def pretext_hash(params: Params) -> str:
    """Identity of a pretext run (`core.identity`): the PRETEXT keys and the data fingerprint."""
    return identity(params, PRETEXT, extra={"fingerprint": data_fingerprint(params)})


def pretrain(params: Params) -> dict:
    """Run (or reuse) the pretext and place its backbone at `params.pretext_weights`.

    Returns the stage summary (also written next to the weights). With model.init other than
    'pretext' nothing is trained and the summary says so.
    """
    out_dir = params.pretext_weights.parent
    if params.model.init != "pretext":
        summary = {"skipped": f"model.init is {params.model.init!r}: no pretext needed"}
        write_json(out_dir / "summary.json", summary)
        return summary
    h = pretext_hash(params)
    run_dir = results.run_dir(params, f"pretext-{h}")
    final = run_dir / "backbone.pt"
    info_path = run_dir / "run.json"
    if final.is_file() and info_path.is_file():
        log.info("reusing pretext run %s", h)
        summary = json.loads(info_path.read_text())
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        env = environment(pick_device(params.train.device), params.train)
        tags = {"variant": "pretext", "stage": "pretext"} | tracking.env_tags(env)
        with tracking.tracked_run(params, name="pretext", run_hash=f"pretext-{h}", tags=tags) as handle:
            t0 = time.perf_counter()
            history = fit_pretext(params, run_dir, handle)
            summary = {
                "run_id": handle.run_id,
                "run_hash": h,
                "steps": params.pretrain.steps,
                "environment": env,
                "history": history,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        write_json(info_path, summary)
    with atomic_path(params.pretext_weights, suffix=".pt") as tmp:
        shutil.copyfile(final, tmp)
    write_json(out_dir / "summary.json", summary)
    return summary


def fit_pretext(params: Params, run_dir: Path, handle: tracking.RunHandle) -> list[dict[str, float]]:
    """pretrain.steps steps of `pretext_loss` with `core.loop.fit`; backbone.pt at the end."""
    pp = params.pretrain
    seed_everything(pp.seed, params.train.deterministic)
    device = pick_device(params.train.device)
    m = params.model
    visual = VisualEncoder(build_backbone(m.backbone, None, m.backbone_widths), m.channels, m.merge)
    head = PretextHead(visual.width, m.proj_hidden, m.proj_dim)
    net = on_device(nn.ModuleDict({"visual": visual, "head": head}), device, params.train)
    # the training loader, with the pretext's batch size and seed
    loader_params = params.replace(**{"train.batch_size": pp.batch_size, "train.seed": pp.seed})
    vocab = load_vocab(params)

    def loader(epoch: int) -> DataLoader:
        return clip_loader(loader_params, "train", vocab, True, epoch, Dist())

    objective = Objective(net, lambda batch: pretext_loss(visual, head, batch, pp.tau), ("objectness", "identity"))
    schedule = Schedule(epochs=math.ceil(pp.steps / len(loader(0))), lr=pp.lr, max_steps=pp.steps)
    hooks = [LRSchedule("constant"), Checkpointer(run_dir / "checkpoint.pt")]
    history = fit(objective, schedule, loader, hooks, params, handle, device, desc="pretext epoch")
    save_checkpoint(run_dir / "backbone.pt", visual.resnet_state_dict())  # the ResNet alone, as an ImageNet file
    return history


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("Language-free pretext: the backbone's start weights (model.init: pretext)").parse_args(argv)
    params = params_from(args)
    summary = pretrain(params)
    print(
        summary.get("skipped")
        or f"pretext backbone {params.pretext_weights} (run {summary['run_id']}, {summary['steps']} steps)"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
