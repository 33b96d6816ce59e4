"""Datasets over the processed store: the batch contract, augmentation, the shuffled control."""

from __future__ import annotations

import torch

from core.data.dataset import (
    ClipDataset,
    FrameDataset,
    collate_clips,
    collate_frames,
    derangement,
    pick_frames,
    to_device,
)
from core.data.store import open_split
from core.data.vocab import Vocab, tokenize


def _vocab(p):
    return Vocab.load(p.processed / "vocab.json")


def test_clip_batch_contract(tiny_store):
    p = tiny_store
    ds = ClipDataset(open_split(p.processed, "val"), _vocab(p), p.data, train=False)
    batch = collate_clips([ds[i] for i in range(min(3, len(ds)))])
    b, t, k, s = batch["masks"].shape[:4]
    assert batch["frames"].shape == (b, t, 3, s, s) and batch["frames"].dtype == torch.uint8
    assert batch["present"].shape == (b, t, k) and batch["present"].dtype == torch.bool
    assert batch["frame_valid"].shape == (b, t)
    for i in range(b):
        ref = batch["referent"][i]
        valid = batch["frame_valid"][i]
        assert batch["present"][i, valid, ref].all()  # the referent is visible in every kept frame
        assert batch["lengths"][i] == (batch["tokens"][i] != 0).sum()
    dev = to_device(batch, torch.device("cpu"))
    assert dev["frames"].dtype == torch.float32 and abs(float(dev["frames"].mean())) < 3


def test_clip_holds_every_instance_of_its_frames(tiny_store):
    p = tiny_store
    st = open_split(p.processed, "train")
    ds = ClipDataset(st, _vocab(p), p.data, train=False)
    item = ds[0]
    rows = pick_frames(st.samples[0].frames, p.data.clip_frames, None)
    ids = sorted({x for r in rows for x in st.frames[r]["ids"]})
    assert item["masks"].shape[:2] == (len(rows), len(ids))
    assert ids[item["referent"]] == st.samples[0].referent


def test_hflip_swaps_left_and_right_in_the_sentence(tiny_store, monkeypatch):
    p = tiny_store.replace(**{"data.augment.crop_scale_min": 1.0})
    st = open_split(p.processed, "train")
    idx = next(i for i, s in enumerate(st.samples) if {"left", "right"} & set(tokenize(s.text)))
    vocab = _vocab(p)
    plain = ClipDataset(st, vocab, p.data, train=False)[idx]
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.zeros(*a))  # always flip
    flipped = ClipDataset(st, vocab, p.data, train=True)[idx]
    assert torch.equal(flipped["masks"], plain["masks"].flip(-1))
    words = tokenize(st.samples[idx].text)
    swapped = ["right" if w == "left" else "left" if w == "right" else w for w in words]
    assert flipped["tokens"] == vocab.encode(swapped, p.data.max_tokens)


def test_frame_dataset_scores_at_original_size(tiny_store):
    p = tiny_store
    st = open_split(p.processed, "test")
    ds = FrameDataset(st, _vocab(p), p.data)
    assert len(ds) == sum(len(s.frames) for s in st.samples)
    batch = collate_frames([ds[0], ds[1]])
    video = st.videos[st.frames[st.samples[0].frames[0]]["video"]]
    assert batch["gt"][0].shape == (video["height"], video["width"])
    assert batch["frames"].shape[1:3] == (1, 3)


def test_frame_dataset_holds_the_frames_other_actors_for_grounding(tiny_store):
    """Each pair's targets are its referent's mask, then exactly the frame's other instances, at the original size."""
    p = tiny_store
    st = open_split(p.processed, "test")
    ds = FrameDataset(st, _vocab(p), p.data)
    seen_other = False
    for i, (sample_idx, row) in enumerate(ds.pairs):
        sample = st.samples[sample_idx]
        expected = sorted(x for x in st.instance_rows(row) if x != sample.referent)
        item = ds[i]
        assert torch.equal(item["targets"][0], item["gt"])
        assert torch.equal(item["gt"], torch.from_numpy(st.orig_mask(row, sample.referent)))
        others = item["targets"][1:]
        assert others.dtype == torch.bool and others.shape[0] == len(expected)
        for k, x in enumerate(expected):
            assert torch.equal(others[k], torch.from_numpy(st.orig_mask(row, x)))
        seen_other |= len(expected) > 0
    assert seen_other  # the fixture's frames do hold several actors
    assert collate_frames([ds[0], ds[1]])["targets"][1].shape[1:] == ds[1]["gt"].shape


def test_shuffled_control_pairs_each_sample_with_another_sentence(tiny_store):
    p = tiny_store
    st = open_split(p.processed, "test")
    perm = derangement(len(st.samples), 0)
    assert sorted(perm) == list(range(len(st.samples))) and all(i != j for i, j in enumerate(perm))
    ds = FrameDataset(st, _vocab(p), p.data, text_from=perm)
    sample_idx = ds.pairs[0][0]
    assert ds[0]["meta"]["text"] == st.samples[perm[sample_idx]].text


def test_training_augmentation_is_reproducible_from_the_seed(tiny_store):
    p = tiny_store
    ds = ClipDataset(open_split(p.processed, "train"), _vocab(p), p.data, train=True)
    torch.manual_seed(3)
    a = ds[0]
    torch.manual_seed(3)
    b = ds[0]
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["masks"], b["masks"])
