"""What the synthetic-batch benchmarks time: a model, a batch and the training step, each built
by the same code the trainer uses so that a benchmark cannot drift from training.

The model comes from core.checkpoint.build_model, the batch from core.data.dataset.collate_clips
over per-clip items shaped as ClipDataset.__getitem__ returns them (then to_device, as the
trainer), and the step is core.train.train_step with core.loop.make_optimizer's optimiser.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.cli import Context
from core.checkpoint import build_model as core_build_model
from core.config import Params
from core.data.dataset import collate_clips, to_device
from core.data.vocab import Vocab
from core.loop import make_optimizer
from core.model import CVLS
from core.train import train_step


def vocab_size(params: Params) -> int:
    """Words incl. <unk> (len(vocab.words) + 1) of a synthetic batch: the configured upper bound
    data.vocab_size, which the real A2D vocabulary reaches."""
    return params.data.vocab_size


def build_model(
    params: Params, device: torch.device, channels_last: bool, seed: int = 0, vocab: Vocab | None = None
) -> CVLS:
    """core.checkpoint.build_model (random backbone init: start weights change no timing) + the trainer's
    .to(device) / channels_last, from a fixed seed; `vocab` None = a data.vocab_size vocabulary."""
    torch.manual_seed(seed)
    vocab = vocab or Vocab(tuple(f"w{i}" for i in range(vocab_size(params) - 1)))
    model = core_build_model(params, vocab, init=False).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def synthetic_items(params: Params, batch_size: int, objects: int, seed: int = 0) -> list[dict[str, Any]]:
    """`batch_size` clip items as ClipDataset.__getitem__ returns them (uint8 frames [T,3,S,S],
    uint8 masks [T,K,S,S], token ids, referent slot), each a full clip of data.clip_frames frames
    with `objects` instances (ellipses at random places/sizes that drift between frames) and a
    sentence of 3 to data.max_tokens random word ids. Drawn batch-wide from one seed: the same
    data for every candidate of a comparison."""
    g = np.random.default_rng(seed)
    b, t, k, s = batch_size, params.data.clip_frames, objects, params.data.input_size
    frames = g.integers(0, 256, (b, t, 3, s, s), dtype=np.uint8)
    yy, xx = np.mgrid[0:s, 0:s] / s
    cy, cx = g.uniform(0.15, 0.85, (2, b, 1, k, 1, 1))
    ry, rx = g.uniform(0.05, 0.25, (2, b, 1, k, 1, 1))
    drift = np.arange(t).reshape(1, t, 1, 1, 1) * g.uniform(-0.03, 0.03, (b, 1, k, 1, 1))  # objects move between frames
    masks = (((yy - cy) / ry) ** 2 + ((xx - cx - drift) / rx) ** 2 <= 1.0).astype(np.uint8)
    lengths = g.integers(3, params.data.max_tokens + 1, b)
    tokens = [g.integers(1, vocab_size(params) + 1, n).tolist() for n in lengths]
    referent = g.integers(0, k, b)
    return [
        {
            "frames": torch.from_numpy(frames[i]),
            "masks": torch.from_numpy(masks[i]),
            "tokens": tokens[i],
            "referent": int(referent[i]),
        }
        for i in range(b)
    ]


def synthetic_batch(
    params: Params, batch_size: int, objects: int, device: torch.device, channels_last: bool, seed: int = 0
) -> dict[str, torch.Tensor]:
    """synthetic_items batched by core.data.dataset.collate_clips (the training loader's collate),
    then core.data.dataset.to_device as the trainer: the training batch contract by construction."""
    return to_device(collate_clips(synthetic_items(params, batch_size, objects, seed)), device, channels_last)


class TrainStep:
    """One optimisation step exactly as the trainer runs it per (already on-device) batch, by
    core.train.train_step: forward under core.runtime.autocast, cvls_loss, zero_grad, backward,
    [grad clip], Adam step (core.loop.make_optimizer, the trainer's optimiser)."""

    def __init__(
        self,
        params: Params,
        model: torch.nn.Module,
        device: torch.device,
        batch: dict[str, torch.Tensor],
        net: Callable[..., Any] | None = None,
    ):
        self.params, self.model, self.device, self.batch = params, model, device, batch
        self.net = model if net is None else net  # e.g. a torch.compile wrapper of `model`
        self.opt = make_optimizer(model, params.train.lr, params.train.weight_decay)

    def __call__(self) -> torch.Tensor:
        loss, _ = train_step(self.net, self.model, self.opt, self.batch, self.params, self.device)
        return loss.detach()


def make_step(
    params: Params, ctx: Context, batch: dict[str, torch.Tensor], seed: int = 0, vocab: Vocab | None = None
) -> TrainStep:
    """A TrainStep of a fresh model (build_model from `seed`) on ctx's device and memory format."""
    return TrainStep(params, build_model(params, ctx.device, ctx.channels_last, seed, vocab), ctx.device, batch)
