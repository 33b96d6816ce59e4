"""What a trained run's features keep: a linear probe of each actor's colour and place, and of the
attributes each sentence names.

    python -m core.probe [--params params.yaml] [--set key=value ...] [--split val]

For every actor in every frame of the split's clips (at least `MIN_PIXELS` pixels at the input
size), its features are pooled over its mask as Eq. 1 pools them (`core.losses.instance_features`
of area-downsampled masks) from the visual map F and from each ResNet level Res2..Res5. A ridge
regression (`ridge_r2`) maps them to the actor's mean RGB and its centroid (x, y in [-1, 1]),
fit on half of the actors and scored (R²) on the other half. R² near 1: the features hold that
attribute linearly; near 0: they do not. The sentences talk about colour and position, and F is
what the fusion and the contrastive loss read, so a colour R² near 0 in F means no sentence can
pick an actor by its colour (the grounding by attribute in eval/strata.json says whether it does).

The sentence side gets the same test: the sentence vector s (Eq. 8) of each distinct sentence of
the split, probed for each attribute the sentence names (the synthetic grammar's reading of its
words, `parse_sentence`: class, colour, size, motion, horizontal and vertical position), the
target being the one-hot of the named value. R² near 0 for colour means s does not tell "the red
ball" from "the blue ball", whatever F holds. And where Eq. 8's attention puts its weight: the
mean largest word weight of a sentence, and for each field the weight on the words that name it
(`word_fields`) next to their share of the words (what equal weights would give).

Reads the run of the params (trained and reused by config hash, like `core.evaluate`) and writes
<run>/probe.json: {split, actors, targets, levels: {level: [R² per target]}, sentences,
sentence_fields: {field: R² (mean over the values' one-hot columns)}, sentence_attention: {peak,
fields: {field: {attention, uniform}}}}.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import load_model, load_vocab
from core.cli import params_from, parser, run_main
from core.config import Params
from core.data.dataset import ClipDataset, collate_clips, encode_texts, to_device
from core.data.store import open_split
from core.data.synthetic.grammar import FIELD_VALUES, parse_sentence, word_fields
from core.data.vocab import tokenize
from core.io import write_json
from core.losses import instance_features, region_weights
from core.model import CVLS
from core.runtime import autocast, pick_device
from core.train import train

TARGETS = ("R", "G", "B", "x", "y")
LEVELS = ("F", "res2", "res3", "res4", "res5")
MIN_PIXELS = 4  # smaller actors pool over a cell or less of Res5
SPLITS = ("train", "val", "test", "jhmdb")
FIELDS = ("class", *FIELD_VALUES)  # what a synthetic sentence can name: class, colour, size, motion, hpos, vpos
MIN_SENTENCES = 8  # a field named by fewer distinct sentences is left out


def ridge_r2(x: np.ndarray, y: np.ndarray, alpha: float = 1.0, seed: int = 0) -> np.ndarray:
    """R² per column of y [N, T] of a ridge regression on x [N, D] (standardised on the fit half,
    with an intercept that is not penalised), fit on a random half of the rows and scored on the
    other half. 1: y is a linear function of x; 0: no better than the held-out mean."""
    if len(x) != len(y) or len(x) < 4:
        raise ValueError(f"ridge_r2 needs >= 4 paired rows, got {len(x)} and {len(y)}")
    idx = np.random.default_rng(seed).permutation(len(x))
    fit, held = idx[: len(x) // 2], idx[len(x) // 2 :]
    mu, sd = x[fit].mean(0), x[fit].std(0) + 1e-6
    z = np.c_[(x - mu) / sd, np.ones(len(x))]
    penalty = alpha * np.eye(z.shape[1])
    penalty[-1, -1] = 0.0
    w = np.linalg.solve(z[fit].T @ z[fit] + penalty, z[fit].T @ y[fit])
    resid = ((z[held] @ w - y[held]) ** 2).sum(0)
    total = ((y[held] - y[held].mean(0)) ** 2).sum(0)
    return 1.0 - resid / np.maximum(total, 1e-12)


@torch.no_grad()
def actor_features(
    model: CVLS, params: Params, split: str, device: torch.device
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per actor of the split's clips: its mask-pooled features at each of LEVELS ([N, D] each)
    and its targets [N, 5] (mean RGB in [0, 1], centroid x, y in [-1, 1])."""
    ds = ClipDataset(open_split(params.processed, split), load_vocab(params), params.data, train=False)
    s = params.data.input_size
    grid = torch.linspace(-1, 1, s)
    feats: dict[str, list[np.ndarray]] = {k: [] for k in LEVELS}
    targets: list[np.ndarray] = []
    for start in range(0, len(ds), params.train.batch_size):
        batch = collate_clips([ds[i] for i in range(start, min(start + params.train.batch_size, len(ds)))])
        b = to_device(batch, device)
        frames = b["frames"].flatten(0, 1)
        with autocast(device, params.train):
            levels = [model.visual(frames), *model.visual.backbone(frames)]
        masks = batch["masks"][:, :, None].flatten(0, 1).float()  # [B·T, 1, K, S, S]: one "clip" per frame
        area = masks.sum(dim=(-2, -1))[:, 0]  # [B·T, K]
        keep = area >= MIN_PIXELS
        rgb = batch["frames"].flatten(0, 1).float() / 255  # [B·T, 3, S, S]
        m = masks[:, 0]  # [B·T, K, S, S]
        mean_rgb = torch.einsum("nchw,nkhw->nkc", rgb, m) / area.clamp_min(1)[..., None]
        cx = torch.einsum("nkhw,w->nk", m, grid) / area.clamp_min(1)
        cy = torch.einsum("nkhw,h->nk", m, grid) / area.clamp_min(1)
        targets.append(torch.cat([mean_rgb, cx[..., None], cy[..., None]], dim=-1)[keep].numpy())
        for name, level in zip(LEVELS, levels):
            w = region_weights(masks, tuple(level.shape[-2:])).to(device)  # [B·T, 1, K+1, h, w]
            pooled = instance_features(level[:, None], w)[:, 0, :-1]  # [B·T, K, C]; the background dropped
            feats[name].append(pooled.float().cpu()[keep].numpy())
    return {k: np.concatenate(v) for k, v in feats.items()}, np.concatenate(targets)


def split_texts(params: Params, split: str) -> list[str]:
    """The split's distinct sentences, in order of first appearance."""
    return list(dict.fromkeys(sample.text for sample in open_split(params.processed, split).samples))


def token_batches(params: Params, texts: Sequence[str], size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens, lengths) of `texts` in batches of `size`, as the loaders encode them (`encode_texts`)."""
    vocab = load_vocab(params)
    for start in range(0, len(texts), size):
        yield encode_texts(texts[start : start + size], vocab, params.data.max_tokens)


@torch.no_grad()
def sentence_vectors(
    model: CVLS, params: Params, split: str, device: torch.device
) -> tuple[np.ndarray, list[dict[str, str]]]:
    """The sentence vector s [N, W] of each distinct sentence of the split (in order of first
    appearance) and the attributes each names (`parse_sentence`)."""
    texts = split_texts(params, split)
    vectors = []
    for tokens, lengths in token_batches(params, texts):
        vectors.append(model.text(tokens.to(device), lengths).float().cpu().numpy())  # fp32: the LSTM is cheap
    return np.concatenate(vectors), [parse_sentence(t) for t in texts]


@torch.no_grad()
def sentence_attention(
    model: CVLS, params: Params, split: str, device: torch.device
) -> tuple[list[np.ndarray], list[list[str | None]]]:
    """Eq. 8's attention weights over the words of each distinct sentence of the split (one array a
    sentence, its length) and the field each of those words names (`word_fields`; None: no field)."""
    texts = split_texts(params, split)
    weights: list[np.ndarray] = []
    for tokens, lengths in token_batches(params, texts):
        a = model.text.attend(tokens.to(device), lengths)[1].float().cpu().numpy()
        weights += [row[:n] for row, n in zip(a, lengths.tolist())]
    fields = [[tag[0] if tag else None for tag in word_fields(tokenize(text))] for text in texts]
    return weights, [f[: len(w)] for f, w in zip(fields, weights)]  # vocab.encode keeps max_tokens words


def attention_shares(weights: Sequence[np.ndarray], fields: Sequence[Sequence[str | None]]) -> dict:
    """What the attention of Eq. 8 reads. peak: the mean over sentences of the largest word weight
    (1: every sentence is one word to s). fields: field -> {attention: the mean, over the
    sentences naming the field, of the weight on the words that name it; uniform: the same under
    equal weights (its share of the words)}, for the fields of >= MIN_SENTENCES sentences."""
    shares: dict[str, list[tuple[float, float]]] = {}
    for a, f in zip(weights, fields):
        for field in set(f) - {None}:
            on = np.array([x == field for x in f])
            shares.setdefault(field, []).append((float(a[on].sum()), float(on.mean())))
    out: dict[str, dict[str, float]] = {}
    for field in FIELDS:
        if len(shares.get(field, [])) >= MIN_SENTENCES:
            attention, uniform = np.mean(shares[field], axis=0)
            out[field] = {"attention": round(float(attention), 3), "uniform": round(float(uniform), 3)}
    return {"peak": round(float(np.mean([a.max() for a in weights])), 3), "fields": out}


def field_r2(vectors: np.ndarray, named: Sequence[dict[str, str]]) -> dict[str, float]:
    """field -> ridge_r2 of the vectors of the sentences naming it to the one-hot of the value they
    name, averaged over the values; fields named by fewer than MIN_SENTENCES sentences or with one
    value are left out."""
    out = {}
    for field in FIELDS:
        rows = [i for i, n in enumerate(named) if field in n]
        values = sorted({named[i][field] for i in rows})
        if len(rows) < MIN_SENTENCES or len(values) < 2:
            continue
        onehot = np.array([[named[i][field] == v for v in values] for i in rows], dtype=np.float64)
        out[field] = round(float(ridge_r2(vectors[rows], onehot).mean()), 3)
    return out


def probe(model: CVLS, params: Params, split: str, device: torch.device) -> dict:
    """ridge_r2 of each level's pooled features to the TARGETS, over the split's actors, and of the
    sentence vectors to the attributes their sentences name (`field_r2`)."""
    feats, targets = actor_features(model, params, split, device)
    levels = {k: [round(float(r), 3) for r in ridge_r2(v, targets)] for k, v in feats.items()}
    vectors, named = sentence_vectors(model, params, split, device)
    return {
        "split": split,
        "actors": int(len(targets)),
        "targets": list(TARGETS),
        "levels": levels,
        "sentences": len(named),
        "sentence_fields": field_r2(vectors, named),
        "sentence_attention": attention_shares(*sentence_attention(model, params, split, device)),
    }


def format_probe(result: dict) -> str:
    lines = [f"linear probe, {result['split']} split, {result['actors']} actors: R² of"]
    lines.append("level  " + " ".join(f"{t:>6s}" for t in result["targets"]))
    lines += [f"{k:6s} " + " ".join(f"{r:6.3f}" for r in v) for k, v in result["levels"].items()]
    fields = result["sentence_fields"]
    lines.append(f"sentence vector s, {result['sentences']} sentences: R² of the named value (one-hot)")
    lines.append(" ".join(f"{k:>6s}" for k in fields))
    lines.append(" ".join(f"{r:6.3f}" for r in fields.values()))
    att = result["sentence_attention"]
    lines.append(f"attention (Eq. 8) on the words naming each field (equal weights), mean peak {att['peak']:.3f}")
    lines.append(" ".join(f"{k:>12s}" for k in att["fields"]))
    lines.append(" ".join(f"{v['attention']:5.3f} ({v['uniform']:.3f})" for v in att["fields"].values()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("Linear probe of a trained run's features: each actor's mean colour and centroid")
    p.add_argument("--split", default="val", choices=SPLITS, help="the split whose actors are probed (default: val)")
    args = p.parse_args(argv)
    params = params_from(args)
    result = train(params)  # reuses the finished run; trains only if it does not exist yet
    device = pick_device(params.train.device)
    out = probe(load_model(params, result.run_dir / "model.pt", device), params, args.split, device)
    write_json(Path(result.run_dir) / "probe.json", out)
    print(format_probe(out))
    return 0


if __name__ == "__main__":
    run_main(main)
