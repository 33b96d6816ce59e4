"""core.probe: the ridge R² on known relations, the per-actor targets by hand, the CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from core.checkpoint import build_model, load_vocab
from core.data.dataset import ClipDataset, collate_clips
from core.data.store import open_split
from core.data.synthetic.grammar import parse_sentence
from core.probe import (
    FIELDS,
    LEVELS,
    MIN_PIXELS,
    MIN_SENTENCES,
    TARGETS,
    actor_features,
    attention_shares,
    field_r2,
    ridge_r2,
    sentence_attention,
    sentence_vectors,
)
from tests.conftest import ROOT, TINY


def test_ridge_r2_is_one_for_a_linear_target_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = np.c_[2 * x[:, 0] + 1, x[:, 1] - x[:, 2], rng.normal(size=400)]
    r2 = ridge_r2(x, y)
    assert r2[0] > 0.999 and r2[1] > 0.999  # linear in x: explained (alpha 1 on 200 rows shrinks by ~0.5%)
    assert abs(r2[2]) < 0.05  # independent noise: no better than the held-out mean
    # a constant target is predicted exactly by the intercept, and its held-out variance is 0: R² 1
    assert ridge_r2(x, np.ones((400, 1)))[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ridge_r2 needs >= 4 paired rows"):
        ridge_r2(x[:3], y[:3])


def test_actor_features_targets_are_each_actors_mean_colour_and_centroid(tiny_store):
    p = tiny_store
    torch.manual_seed(0)
    model = build_model(p, load_vocab(p)).eval()
    feats, targets = actor_features(model, p, "val", torch.device("cpu"))
    assert set(feats) == set(LEVELS) and targets.shape[1] == len(TARGETS)
    assert all(len(v) == len(targets) for v in feats.values())
    assert feats["F"].shape[1] == model.visual.width
    # by hand, from the dataset's clips in order: every actor of every frame with >= MIN_PIXELS pixels
    ds = ClipDataset(open_split(p.processed, "val"), load_vocab(p), p.data, train=False)
    expected = []
    grid = np.linspace(-1, 1, p.data.input_size)
    for i in range(len(ds)):
        item = ds[i]
        frames, masks = item["frames"].numpy().astype(float) / 255, item["masks"].numpy().astype(bool)
        for t in range(masks.shape[0]):
            for k in range(masks.shape[1]):
                m = masks[t, k]
                if m.sum() >= MIN_PIXELS:
                    ys, xs = np.nonzero(m)
                    expected.append([*frames[t][:, m].mean(1), grid[xs].mean(), grid[ys].mean()])
    assert np.allclose(targets, np.array(expected), atol=1e-5)


def test_field_r2_reads_the_value_a_sentence_names_where_the_vectors_hold_it():
    rng = np.random.default_rng(0)
    colours, sizes = ["red", "blue", "green"], ["small", "large"]
    named = [{"class": "ball", "colour": colours[i % 3]} for i in range(300)]
    named += [{"class": "box", "size": sizes[i % 2]} for i in range(300)]
    named += [{"class": "bar", "motion": "left"} for _ in range(20)]  # one value: nothing to tell apart
    named += [{"class": "bar", "hpos": "left"}, {"class": "bar", "hpos": "right"}]  # < MIN_SENTENCES
    # dimension 0..2: the colour's one-hot; the rest noise. Size is in no dimension.
    vectors = rng.normal(size=(len(named), 8))
    for i, n in enumerate(named):
        if "colour" in n:
            vectors[i, :3] = 5 * np.eye(3)[colours.index(n["colour"])]
    r2 = field_r2(vectors, named)
    assert set(r2) == {"class", "colour", "size"}  # motion: one value; hpos: 2 sentences < MIN_SENTENCES
    assert MIN_SENTENCES > 2 and MIN_SENTENCES <= 20  # so hpos is left out and motion is not, by count
    assert r2["colour"] > 0.99  # a linear function of the vectors
    assert r2["size"] < 0.1  # independent of them: no better than the held-out mean
    assert set(r2) <= set(FIELDS)


def _untrained_model_texts_and_first_batch(p):
    """An untrained model, the val split's distinct sentences in order (by hand), and the training
    loader's batch of sample 0, whose sentence is the first of them."""
    torch.manual_seed(0)
    model = build_model(p, load_vocab(p)).eval()
    texts = list(dict.fromkeys(s.text for s in open_split(p.processed, "val").samples))
    batch = collate_clips([ClipDataset(open_split(p.processed, "val"), load_vocab(p), p.data, train=False)[0]])
    return model, texts, batch


def test_sentence_vectors_are_the_text_encoders_on_each_distinct_sentence(tiny_store):
    p = tiny_store
    model, texts, batch = _untrained_model_texts_and_first_batch(p)
    vectors, named = sentence_vectors(model, p, "val", torch.device("cpu"))
    assert vectors.shape == (len(texts), model.visual.width) and named == [parse_sentence(t) for t in texts]
    with torch.no_grad():
        alone = model.text(batch["tokens"], batch["lengths"])[0].numpy()
    assert np.allclose(vectors[0], alone, atol=1e-5)


def test_attention_shares_by_hand():
    # ten "small ball" sentences with 0.9 of the weight on the size word; ten "ball on the left" with
    # equal weights (the position word: a quarter); two colour sentences (< MIN_SENTENCES)
    weights = [np.array([0.9, 0.1])] * 10 + [np.full(4, 0.25)] * 10 + [np.array([0.5, 0.5])] * 2
    fields = [["size", "class"]] * 10 + [["class", None, None, "hpos"]] * 10 + [["colour", "class"]] * 2
    out = attention_shares(weights, fields)
    assert out["peak"] == pytest.approx((10 * 0.9 + 10 * 0.25 + 2 * 0.5) / 22, abs=1e-3)
    assert out["fields"]["size"] == {"attention": 0.9, "uniform": 0.5}
    assert out["fields"]["hpos"] == {"attention": 0.25, "uniform": 0.25}
    # class: 0.1 in ten sentences, 0.25 in ten, 0.5 in two; its share of the words 1/2, 1/4, 1/2
    assert out["fields"]["class"] == pytest.approx(
        {"attention": round((1 + 2.5 + 1) / 22, 3), "uniform": round((5 + 2.5 + 1) / 22, 3)}
    )
    assert "colour" not in out["fields"] and MIN_SENTENCES > 2


def test_sentence_attention_is_the_text_encoders_on_each_sentences_words(tiny_store):
    p = tiny_store
    model, texts, batch = _untrained_model_texts_and_first_batch(p)
    weights, fields = sentence_attention(model, p, "val", torch.device("cpu"))
    assert len(weights) == len(fields) == len(texts)
    assert all(
        len(w) == len(f) == len(t.split()) and abs(w.sum() - 1) < 1e-5 for w, f, t in zip(weights, fields, texts)
    )
    assert [f for f in fields[0] if f] == list(parse_sentence(texts[0]))  # the fields it names, in word order
    with torch.no_grad():
        alone = model.text.attend(batch["tokens"], batch["lengths"])[1][0].numpy()
    assert np.allclose(weights[0], alone, atol=1e-6)


def test_probe_cli_writes_the_r2_of_every_level(tiny_store, tmp_path):
    args = ["--set", TINY, "--set", f"paths.outputs={tiny_store.outputs}", "--set", "train.seed=21"]
    args += ["--set", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]
    r = subprocess.run([sys.executable, "-m", "core.probe", *args], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = next(d for d in (tiny_store.outputs / "runs").iterdir() if (d / "probe.json").is_file())
    out = json.loads((run_dir / "probe.json").read_text())
    assert out["split"] == "val" and out["targets"] == list(TARGETS) and out["actors"] >= 4
    assert set(out["levels"]) == set(LEVELS) and all(len(v) == len(TARGETS) for v in out["levels"].values())
    assert out["sentences"] >= 1 and set(out["sentence_fields"]) <= set(FIELDS)
    attention = out["sentence_attention"]
    assert 0 < attention["peak"] <= 1 and set(attention["fields"]) <= set(FIELDS)
    assert "linear probe, val split" in r.stdout and "sentence vector s" in r.stdout and "attention (Eq. 8)" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "core.probe", *args, "--split", "nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "invalid choice: 'nope'" in bad.stderr
