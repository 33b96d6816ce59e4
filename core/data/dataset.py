"""torch Datasets over the processed store, and the batch contract the model reads.

Training item = a clip: one sentence with up to `clip_frames` of the annotated frames of its
video where the referent is visible, and the masks of *every* instance in those frames (the
contrastive loss pools objects across the clip, Eq. 1-2) but those that share an object with the
referent: a MeViS multi-object target and its own members are one object set, not negatives.
Evaluation item = one (annotated frame, sentence) pair with the ground truth at the frame's
original size.

Batches stay uint8 until `to_device`, which normalises on the device (4x less to copy).
Batch contract after `to_device` (see core/model.py, core/losses.py):
    frames float [B,T,3,S,S] normalised; tokens long [B,L] (0 = pad); lengths long [B];
    masks float [B,T,K,S,S]; present bool [B,T,K]; referent long [B]; frame_valid bool [B,T]
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from core.data.store import SampleRef, SplitStore
from core.data.vocab import Vocab, flip_words, tokenize
from core.sections import DataParams

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def pick_frames(rows: tuple[int, ...], n: int, rng: torch.Generator | None) -> list[int]:
    """n of the clip's frame rows in time order: random when training, evenly spaced otherwise."""
    if len(rows) <= n:
        return list(rows)
    if rng is None:
        return [rows[i] for i in np.linspace(0, len(rows) - 1, n).round().astype(int)]
    chosen = torch.randperm(len(rows), generator=rng)[:n].sort().values
    return [rows[i] for i in chosen.tolist()]


class ClipDataset(Dataset):
    def __init__(self, store: SplitStore, vocab: Vocab, data: DataParams, train: bool):
        self.store, self.vocab, self.data, self.train = store, vocab, data, train
        s = data.input_size
        self.crop = v2.RandomResizedCrop((s, s), scale=(data.augment.crop_scale_min, 1.0), antialias=True)

    def __len__(self) -> int:
        return len(self.store.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        st, sample = self.store, self.store.samples[i]
        rng = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)))) if self.train else None
        rows = pick_frames(sample.frames, self.data.clip_frames, rng)
        # the clip's instances, Eq. 2's negatives among them; without those that share an object with
        # the referent (a MeViS union and its own members: one object set, not a negative of itself)
        target = st.objects_of(sample.video, sample.referent)
        ids = sorted(
            x
            for x in {x for r in rows for x in st.frames[r]["ids"]}
            if x == sample.referent or target.isdisjoint(st.objects_of(sample.video, x))
        )
        slot = {x: k for k, x in enumerate(ids)}
        s = st.size
        masks = np.zeros((len(rows), len(ids), s, s), np.uint8)
        for t, r in enumerate(rows):
            for inst, mrow in st.instance_rows(r).items():
                if inst in slot:
                    masks[t, slot[inst]] = st.mask_array[mrow]
        frames = torch.from_numpy(np.stack([st.frame_array[r] for r in rows])).permute(0, 3, 1, 2)
        masks_t = torch.from_numpy(masks)
        words = tokenize(sample.text)
        if self.train:
            if self.data.augment.hflip and torch.rand(1).item() < 0.5:
                frames, masks_t, words = frames.flip(-1), masks_t.flip(-1), flip_words(words)
            if self.data.augment.crop_scale_min < 1.0:
                t, k = masks_t.shape[:2]
                vid, m = self.crop(tv_tensors.Video(frames), tv_tensors.Mask(masks_t.reshape(t * k, s, s)))
                frames, masks_t = vid.as_subclass(torch.Tensor), m.as_subclass(torch.Tensor).reshape(t, k, s, s)
        return {
            "frames": frames.contiguous(),  # uint8 [t,3,S,S]
            "masks": masks_t.contiguous(),  # uint8 [t,K,S,S]
            "tokens": self.vocab.encode(words, self.data.max_tokens),
            "referent": slot[sample.referent],
        }


def collate_clips(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad clips to the batch's longest clip, most instances and longest sentence."""
    b = len(items)
    t = max(x["frames"].shape[0] for x in items)
    k = max(x["masks"].shape[1] for x in items)
    n_tok = max(len(x["tokens"]) for x in items)
    s = items[0]["frames"].shape[-1]
    frames = torch.zeros(b, t, 3, s, s, dtype=torch.uint8)
    masks = torch.zeros(b, t, k, s, s, dtype=torch.uint8)
    tokens = torch.zeros(b, n_tok, dtype=torch.long)
    frame_valid = torch.zeros(b, t, dtype=torch.bool)
    for i, x in enumerate(items):
        ti, ki = x["masks"].shape[:2]
        frames[i, :ti] = x["frames"]
        masks[i, :ti, :ki] = x["masks"]
        tokens[i, : len(x["tokens"])] = torch.as_tensor(x["tokens"])
        frame_valid[i, :ti] = True
    return {
        "frames": frames,
        "masks": masks,
        "present": masks.flatten(3).amax(-1) > 0,  # (any() on uint8 returns uint8)
        "tokens": tokens,
        "lengths": torch.tensor([max(len(x["tokens"]), 1) for x in items]),
        "referent": torch.tensor([x["referent"] for x in items]),
        "frame_valid": frame_valid,
    }


def frames_channels_last(frames: torch.Tensor) -> torch.Tensor:
    """[B, T, 3, H, W] frames with each frame's [3, H, W] in the channels_last memory format (the
    model sees them flattened to [B·T, 3, H, W])."""
    b, t = frames.shape[:2]
    return frames.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (b, t))


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    """Copy a collated batch to `device` and normalise frames there (uint8 -> float)."""
    out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    mean = torch.tensor(MEAN, device=device).view(1, 1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 1, 3, 1, 1) * 255
    frames = (out["frames"].float() - mean) / std
    out["frames"] = frames_channels_last(frames) if channels_last else frames
    if "masks" in out:
        out["masks"] = out["masks"].float()
    return out


class FrameDataset(Dataset):
    """(annotated frame, sentence) pairs of the classic protocol; `text_from` pairs each sample
    with another sample's sentence (the shuffled-sentence control)."""

    def __init__(self, store: SplitStore, vocab: Vocab, data: DataParams, text_from: list[int] | None = None):
        self.store, self.vocab, self.data = store, vocab, data
        self.pairs = store.eval_pairs()
        self.text_from = text_from

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample_idx, row = self.pairs[i]
        sample = self.store.samples[sample_idx]
        text = self.store.samples[self.text_from[sample_idx]].text if self.text_from else sample.text
        frame = self.store.frames[row]
        targets = torch.from_numpy(self.targets(row, sample))
        return {
            "frames": torch.from_numpy(np.array(self.store.frame_array[row])).permute(2, 0, 1)[None],  # [1,3,S,S]
            "tokens": self.vocab.encode(tokenize(text), self.data.max_tokens),
            "gt": targets[0],
            "targets": targets,  # the referent, then the frame's other actors (grounding)
            "meta": {
                "pair": i,
                "sample": sample_idx,
                "video": self.store.videos[frame["video"]]["id"],
                "frame": frame["index"] + 1,
                "text": text,
            },
        }

    def targets(self, row: int, sample: SampleRef) -> np.ndarray:
        """bool [1 + K, H, W] at the frame's original size: the referent's mask (empty where it is not
        in view), then the frame's K other actors (grounding), without those that share an object
        with the referent (a MeViS union and its own members); none when the referent is not in
        the frame (an absent pair of the J&F datasets has nothing to pick)."""
        ids, masks = self.store.frame_masks(row)
        if sample.referent not in ids:
            return self.store.orig_mask(row, sample.referent)[None]
        ref = ids.index(sample.referent)
        if not masks[ref].any():
            return masks[ref : ref + 1].copy()
        video = self.store.frames[row]["video"]
        target = self.store.objects_of(video, sample.referent)
        keep = [(x, k) for k, x in enumerate(ids) if k != ref and target.isdisjoint(self.store.objects_of(video, x))]
        return masks[[ref, *(k for _, k in sorted(keep))]]


def pad_tokens(encoded: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens long [B, L], lengths long [B]) of encoded sentences: padded with 0 (<pad>), L >= 1,
    length max(len, 1), so a sentence without words reads as one <pad>."""
    tokens = torch.zeros(len(encoded), max([1, *map(len, encoded)]), dtype=torch.long)
    for i, ids in enumerate(encoded):
        tokens[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return tokens, torch.tensor([max(len(ids), 1) for ids in encoded], dtype=torch.long)


def encode_texts(texts: Sequence[str], vocab: Vocab, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens long [E, L], lengths long [E]) as `FrameDataset` + `collate_frames` make them:
    `vocab.encode(tokenize(text), max_tokens)`, then `pad_tokens`."""
    return pad_tokens([vocab.encode(tokenize(t), max_tokens) for t in texts])


def collate_frames(items: list[dict[str, Any]]) -> dict[str, Any]:
    tokens, lengths = pad_tokens([list(x["tokens"]) for x in items])
    return {
        "frames": torch.stack([x["frames"] for x in items]),  # uint8 [B,1,3,S,S]
        "tokens": tokens,
        "lengths": lengths,
        "gt": [x["gt"] for x in items],
        "targets": [x["targets"] for x in items],
        "meta": [x["meta"] for x in items],
    }


def derangement(n: int, seed: int) -> list[int]:
    """A permutation with no fixed point (every sample gets another sample's sentence)."""
    if n < 2:
        return list(range(n))
    rng = random.Random(seed)
    perm = list(range(n))
    rng.shuffle(perm)
    # rotate the shuffled order by one: a cycle through all n, so no index maps to itself
    pos = {v: i for i, v in enumerate(perm)}
    return [perm[(pos[i] + 1) % n] for i in range(n)]


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: seed numpy/random from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
