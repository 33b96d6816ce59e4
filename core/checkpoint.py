"""Building, saving and loading models and the vocabulary: one place every stage uses.

Training, evaluation, the pretext and the benchmarks get their model and vocabulary here, so
none of them imports the trainer. Checkpoints are written atomically and read with
`torch.load(weights_only=True)` (plain tensors and containers, never pickled code).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from core.backbone import note_random_init
from core.config import Params
from core.data.vocab import Vocab
from core.errors import UserError
from core.io import write_bytes
from core.model import CVLS
from core.runtime import on_device


def load_vocab(params: Params) -> Vocab:
    """The vocabulary extraction built from the training sentences."""
    return Vocab.load(params.processed / "vocab.json")


def missing_weights(params: Params) -> str:
    """The one-line error for start weights that are not there (what to run, or which key to set)."""
    if params.model.init == "pretext":
        return (
            f"{params.backbone_weights}: pretext backbone not found; run the pretext stage first "
            "(dvc repro pretrain, or python -m core.pretext) or set model.init: scratch"
        )
    return f"model.pretrained_weights: {params.backbone_weights}: file not found"


def build_model(params: Params, vocab: Vocab, *, init: bool = True) -> CVLS:
    """CVLS for `params`; init=False skips the backbone's start weights (a checkpoint follows)."""
    weights = params.backbone_weights if init else None
    if init and weights is None:
        note_random_init(params.model.backbone)
    if weights is not None and not weights.is_file():
        raise UserError(missing_weights(params))
    return CVLS(params.model, params.loss, len(vocab.words) + 1, weights=weights)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """`torch.save(state)` to `path`, atomically (a kill never leaves a torn checkpoint).

    Saved through a buffer: torch.save names the archive inside the file after the file it
    writes, and the atomic temp name is random, so the same weights would give other bytes on
    every save; run identities hash the start-weights file (`core.train.run_fingerprint`).
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state on the CPU; a foreign or corrupt file is a one-line error naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn file cannot exist (atomic writes); this is a foreign/corrupt one
        first = (str(err).strip().splitlines() or [""])[0][:200]  # torch's messages run over many lines
        raise UserError(
            f"{path}: cannot load checkpoint ({type(err).__name__}: {first}); delete it or use --force"
        ) from None


def load_model(params: Params, path: Path, device: torch.device) -> CVLS:
    """The trained model saved at `path` (a run's model.pt), in eval mode on `device`."""
    model = build_model(params, load_vocab(params), init=False)  # the checkpoint holds every weight
    model.load_state_dict(load_checkpoint(path)["model"])
    return on_device(model, device, params.train).eval()  # as it trained
