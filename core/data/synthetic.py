"""The embedded default benchmark: a synthetic referring-segmentation dataset.

Writes a small dataset in exactly the A2D Sentences on-disk layout (`params.raw_a2d`) and a
J-HMDB Sentences twin (`params.raw_jhmdb`, test only), so the real readers, extraction and
everything downstream run unchanged on it. Everything is a deterministic function of
`data.synthetic` (seed, sizes, resolution).

What it tests is what CVLS is about: language-guided disambiguation. Each video shows a few
actors (ball / box / triangle / bar) with a colour, a size, a motion and a position (the
half of the frame its whole trajectory stays in). In a `distractor_fraction` share of the
sentences the referent shares its class with another actor of the clip - a *semantically
similar distractor* that often copies the referent's other attributes - and the sentence
names an attribute that tells them apart ("the small red ball", "the box moving left").
Every sentence is checked programmatically to match exactly one actor, and videos carry up
to three sentences about different actors, so a model that ignores the sentence must fail.

Pipeline: `plan_dataset` (pure: scenes + sentences, no pixels) -> `render_scene` (numpy:
frames + per-instance visible masks) -> the layout writers of `core.data.a2d` and
`core.data.jhmdb`. Generation writes into hidden temp folders next to the final ones and
renames them into place only when complete, so a killed run never leaves a folder that
looks finished; a rerun with the same params regenerates the same files.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from core.cli import parser, params_from, run_main
from core.config import Params, SyntheticParams
from core.data.a2d import (
    VideosetRow,
    video_path,
    write_annotations,
    write_frame_h5,
    write_missed_videos,
    write_videoset,
)
from core.data.jhmdb import write_annotations as write_jhmdb_annotations
from core.data.jhmdb import write_puppet_mask, write_video_frames
from core.data.video import write_mp4
from core.io import write_json

# --------------------------------------------------------------------------------------
# vocabulary of the scenes and the sentences
# --------------------------------------------------------------------------------------

CLASSES = ("ball", "box", "triangle", "bar")
CLASS_WORDS = {
    "ball": ("ball", "circle", "disc"),
    "box": ("box", "square", "block"),
    "triangle": ("triangle", "wedge"),
    "bar": ("bar", "stick", "rod"),
}
# Saturated and far apart in hue, so they survive H.264 yuv420p and never look like the
# muted grey/brown clutter.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 175, 55),
    "blue": (40, 80, 225),
    "yellow": (235, 215, 40),
    "purple": (150, 55, 205),
    "cyan": (40, 205, 220),
}
SIZES = ("small", "large")
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
SIZE_RADIUS = {"small": 0.10, "large": 0.16}  # fraction of min(H, W): several feature cells even at stride 4
MOTIONS = ("left", "right", "up", "down", "still")
MOTION_VERBS = ("moving", "going", "heading", "sliding")
STILL_PHRASES = ("standing still", "that is not moving", "staying still", "that is still")
HPOS, VPOS = ("left", "right"), ("top", "bottom")
ATTRIBUTE_TYPES = ("colour", "size", "position", "motion")
TYPE_KEYS = {"colour": ("colour",), "size": ("size",), "position": ("hpos", "vpos"), "motion": ("motion",)}
# J-HMDB action folders (real J-HMDB action names), from the referent's motion.
ACTIONS = {"left": "walk", "right": "run", "up": "jump", "down": "sit", "still": "stand"}

TRAVEL = 0.15  # a moving actor crosses this fraction of the frame over the whole video
MID_MARGIN = 0.1  # centres stay this fraction of the frame away from the midline: position is clear
MIN_VISIBLE_REFERENT = 0.7  # visible share of a referent's shape in every frame
MIN_VISIBLE_OTHER = 0.3
MAX_SENTENCES = 3
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# random streams: one SeedSequence per purpose, so changing one count does not reshuffle the rest
_IDS, _TRAIN, _TEST, _JHMDB, _MISSED = range(1, 6)


# --------------------------------------------------------------------------------------
# scene description
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """One object of a scene. Its position words are true for its whole trajectory."""

    instance_id: int  # 1..n, as in the mask files
    cls: str
    colour: str
    size: str
    motion: str
    hpos: str  # "left" | "right": the half of the frame the centre stays in
    vpos: str  # "top" | "bottom"
    radius: float  # pixels
    start: tuple[float, float]  # centre (x, y) at frame 0
    velocity: tuple[float, float]  # pixels per frame
    z: int  # drawing order; higher is drawn on top (occludes)

    def centre(self, t: int) -> tuple[float, float]:
        return self.start[0] + self.velocity[0] * t, self.start[1] + self.velocity[1] * t

    def attributes(self) -> dict[str, str]:
        return {"class": self.cls, "colour": self.colour, "size": self.size,
                "hpos": self.hpos, "vpos": self.vpos, "motion": self.motion}


@dataclass(frozen=True)
class Sentence:
    text: str
    referent: int  # instance id
    named: dict[str, str]  # the attributes the text names (keys of Actor.attributes())
    key: str  # the attribute type that disambiguates (one of ATTRIBUTE_TYPES)
    same_class: bool  # the referent shares its class with another actor of the clip


@dataclass(frozen=True)
class Scene:
    video_id: str
    split: str  # "train" | "test" | "missed" | "jhmdb"
    height: int
    width: int
    frames: int
    actors: tuple[Actor, ...]
    sentences: tuple[Sentence, ...]
    annotated: tuple[int, ...]  # 0-based frame indices with masks (A2D)
    render_seed: int  # background, clutter and noise come from this alone
    masked_frames: int  # J-HMDB: frames with a puppet mask (< frames: the trailing-frames quirk)

    @property
    def action(self) -> str:
        """J-HMDB action folder: the referent's motion."""
        ref = self.actor(self.sentences[0].referent)
        return ACTIONS[ref.motion]

    def actor(self, instance_id: int) -> Actor:
        return next(a for a in self.actors if a.instance_id == instance_id)


@dataclass(frozen=True)
class DatasetPlan:
    train: tuple[Scene, ...]
    test: tuple[Scene, ...]
    missed: Scene  # listed in a2d_missed_videos.txt: written in full, never usable
    jhmdb: tuple[Scene, ...]


# --------------------------------------------------------------------------------------
# sentences: matching, parsing, wording
# --------------------------------------------------------------------------------------


def matching_actors(actors: Sequence[Actor], named: dict[str, str]) -> list[int]:
    """Instance ids of the actors for which every named attribute is true."""
    return [a.instance_id for a in actors if all(a.attributes()[k] == v for k, v in named.items())]


def parse_sentence(text: str) -> dict[str, str]:
    """The attributes a sentence names, read back from its words (the inverse of wording).

    Direction words after a motion verb are motions; other left/right/top/bottom are
    positions; 'still' or 'not moving' is the still motion.
    """
    words = text.lower().split()
    lookup = {w: ("class", c) for c, ws in CLASS_WORDS.items() for w in ws}
    lookup.update({c: ("colour", c) for c in COLOURS})
    lookup.update({w: ("size", s) for s, ws in SIZE_WORDS.items() for w in ws})
    named: dict[str, str] = {}
    for i, w in enumerate(words):
        prev = words[i - 1] if i else ""
        if w in lookup:
            key, value = lookup[w]
            named[key] = value
        elif w in ("left", "right", "up", "down") and prev in MOTION_VERBS:
            named["motion"] = w
        elif w in HPOS:
            named["hpos"] = w
        elif w in VPOS:
            named["vpos"] = w
        elif w == "still" or (w == "moving" and prev == "not"):
            named["motion"] = "still"
    return named


def _position_phrase(named: dict[str, str], rng: np.random.Generator) -> str:
    h, v = named.get("hpos"), named.get("vpos")
    if h and v:
        return f"in the {v} {h}" + str(rng.choice(["", " corner"]))
    if h:
        return str(rng.choice([f"on the {h}", f"on the {h} side", f"at the {h}"]))
    return str(rng.choice([f"at the {v}", f"near the {v}", f"at the {v} of the frame"]))


def _motion_phrase(motion: str, rng: np.random.Generator) -> str:
    if motion == "still":
        return str(rng.choice(STILL_PHRASES))
    verb = str(rng.choice(MOTION_VERBS))
    return str(rng.choice([f"{verb} {motion}", f"that is {verb} {motion}", f"which is {verb} {motion}"]))


def word_sentence(named: dict[str, str], rng: np.random.Generator) -> str:
    """Text for the named attributes, from templates with synonyms and varied word order."""
    pre = []
    if "size" in named:
        pre.append(str(rng.choice(SIZE_WORDS[named["size"]])))
    colour_after = "colour" in named and "motion" not in named and rng.random() < 0.25
    if "colour" in named and not colour_after:
        pre.append(named["colour"])
    noun = str(rng.choice(CLASS_WORDS[named["class"]]))
    post = []
    if "hpos" in named or "vpos" in named:
        post.append(_position_phrase(named, rng))
    if "motion" in named:
        post.append(_motion_phrase(named["motion"], rng))
    if len(post) == 2 and rng.random() < 0.5:
        post.reverse()
    if colour_after:
        post.append(f"that is {named['colour']}")
    article = str(rng.choice(["the", "the", "a", ""]))
    return " ".join(w for w in [article, *pre, noun, *post] if w)


def _describe(actors: Sequence[Actor], ref: Actor, key: str, rng: np.random.Generator) -> Sentence | None:
    """A sentence naming ref's class and attributes that single it out, or None if none do.

    Tries the planned key type first, then any single attribute, then pairs; then may add
    one more true attribute for variety (never breaks uniqueness: ref still matches).
    """
    attrs = ref.attributes()
    types = [key] + [t for t in rng.permutation(ATTRIBUTE_TYPES) if t != key]
    candidates: list[tuple[str, tuple[str, ...]]] = []
    for t in types:
        keys = list(TYPE_KEYS[t])
        rng.shuffle(keys)
        candidates += [(t, (k,)) for k in keys]
    pairs = [(a[0], a[1] + b[1]) for a, b in itertools.combinations(candidates, 2) if a[1] != b[1]]
    for t, keys in candidates + pairs:
        named = {"class": ref.cls, **{k: attrs[k] for k in keys}}
        if matching_actors(actors, named) == [ref.instance_id]:
            break
    else:
        return None
    if rng.random() < 0.35:
        extra = [k for k in ("colour", "size", "hpos", "vpos", "motion") if k not in named]
        k = str(rng.choice(extra))
        named[k] = attrs[k]
    text = word_sentence(named, rng)
    same = sum(a.cls == ref.cls for a in actors) > 1
    return Sentence(text=text, referent=ref.instance_id, named=named, key=t, same_class=same)


# --------------------------------------------------------------------------------------
# planning: who is in a scene, with which attributes, where, and what is said about them
# --------------------------------------------------------------------------------------


def _video_ids(seed: int, n: int) -> list[str]:
    """A2D-like 11-character YouTube-style ids, unique, deterministic from the seed."""
    rng = np.random.default_rng([seed, _IDS])
    alnum = ID_CHARS[:62]
    ids: list[str] = []
    while len(ids) < n:
        vid = alnum[rng.integers(62)] + "".join(ID_CHARS[i] for i in rng.integers(64, size=10))
        if vid not in ids:
            ids.append(vid)
    return ids


def _hard_flags(rng: np.random.Generator, counts: Sequence[int], fraction: float) -> list[list[bool]]:
    """Which sentences get a same-class distractor: exactly round(fraction * total) of them,
    spread at random over the split (exact count, so the share is close even for few videos)."""
    total = sum(counts)
    hard = np.zeros(total, bool)
    hard[rng.permutation(total)[: int(round(fraction * total))]] = True
    out, i = [], 0
    for k in counts:
        out.append(hard[i : i + k].tolist())
        i += k
    return out


def _needed_actors(hard: Sequence[bool]) -> int:
    """Fewest actors for these sentences: one per easy referent (its class unique) plus one
    shared class group of >= 2 for the hard referents."""
    h = sum(hard)
    return (len(hard) - h) + (max(2, h) if h else 0)


def _fit_flags(rng: np.random.Generator, hard: list[bool], n: int) -> list[bool]:
    """Make a pattern the clip's `n` actors can host (only needed when actors_max is small:
    a 2-actor clip cannot mix a hard and an easy referent). An infeasible mix becomes all
    hard with probability h/k, else all easy: the expected number of hard sentences, and so
    the split's share, is unchanged."""
    if _needed_actors(hard) > n:
        all_hard = rng.random() < sum(hard) / len(hard)
        hard = [all_hard] * len(hard)
    while _needed_actors(hard) > n:  # k > n cannot happen (k <= n), kept as a guard
        hard.pop()
    return hard


def _classes(rng: np.random.Generator, hard: Sequence[bool], n: int) -> list[str]:
    """Class per actor; actor k < len(hard) is the referent of sentence k.

    Easy referents get classes no other actor has; hard referents share one class with at
    least one more actor; the remaining actors never take an easy referent's class.
    """
    order = [str(c) for c in rng.permutation(CLASSES)]
    easy = [order.pop() for h in hard if not h]
    group = order.pop() if any(hard) else None
    out, e = [], iter(easy)
    for h in hard:
        out.append(group if h else next(e))
    if group is not None and sum(hard) < 2:
        out.append(group)  # the distractor
    free = ([group] if group else []) + order
    while len(out) < n:
        out.append(str(rng.choice(free)))
    return out


def _sample_attributes(rng: np.random.Generator) -> dict[str, str]:
    return {
        "colour": str(rng.choice(list(COLOURS))), "size": str(rng.choice(SIZES)),
        "motion": str(rng.choice(MOTIONS)), "hpos": str(rng.choice(HPOS)), "vpos": str(rng.choice(VPOS)),
    }


def _assign_attributes(rng: np.random.Generator, classes: list[str], n_ref: int) -> tuple[list[dict[str, str]], list[str]]:
    """Attributes per actor and the planned disambiguating type per referent.

    Same-class distractors copy each of the referent's attributes with probability 1/2
    (semantically similar), then differ from it in the planned key attribute.
    """
    attrs = [_sample_attributes(rng) for _ in classes]
    keys = [str(rng.choice(ATTRIBUTE_TYPES)) for _ in range(n_ref)]
    for r in range(n_ref):
        mates = [j for j in range(len(classes)) if j != r and classes[j] == classes[r]]
        key_fields = TYPE_KEYS[keys[r]]
        key_field = key_fields[rng.integers(len(key_fields))]
        for j in mates:
            if j >= n_ref:  # never overwrite another referent's attributes, only distractors'
                for f in attrs[r]:
                    if f != key_field and rng.random() < 0.5:
                        attrs[j][f] = attrs[r][f]
            if attrs[j][key_field] == attrs[r][key_field]:
                attrs[j][key_field] = _other_value(rng, key_field, attrs[r][key_field])
    return attrs, keys


def _other_value(rng: np.random.Generator, field: str, value: str) -> str:
    values = {"colour": tuple(COLOURS), "size": SIZES, "motion": MOTIONS, "hpos": HPOS, "vpos": VPOS}[field]
    return str(rng.choice([v for v in values if v != value]))


def _half_extent(cls: str, r: float) -> tuple[float, float]:
    """Half width and half height of a class's shape of radius r (see _shape)."""
    return {"ball": (r, r), "box": (0.88 * r, 0.88 * r), "triangle": (1.32 * r, 1.2 * r), "bar": (1.4 * r, 0.5 * r)}[cls]


def _axis_start(rng: np.random.Generator, half: str, extent: float, dim: int, travel: float) -> tuple[float, float]:
    """(start, signed travel) along one axis: the whole path stays inside the frame and in
    its half, at least MID_MARGIN * dim from the midline."""
    first = half in ("left", "top")
    lo, hi = (extent + 1, dim / 2 - MID_MARGIN * dim) if first else (dim / 2 + MID_MARGIN * dim, dim - extent - 1)
    if hi < lo:
        lo = hi = (lo + hi) / 2
    travel = float(np.sign(travel)) * min(abs(travel), hi - lo)
    a, b = (lo, hi - travel) if travel >= 0 else (lo - travel, hi)
    return float(rng.uniform(a, b)) if b > a else float(a), travel


def _place(
    rng: np.random.Generator, syn: SyntheticParams, classes: list[str], attrs: list[dict[str, str]], ids: list[int]
) -> list[Actor]:
    """Actors in planning order (referents first) with sizes, start points and velocities."""
    h, w, t = syn.height, syn.width, syn.frames_per_video
    base = min(h, w)
    z = rng.permutation(len(classes))
    actors = []
    for i, (cls, a) in enumerate(zip(classes, attrs)):
        r = SIZE_RADIUS[a["size"]] * base * float(rng.uniform(0.92, 1.08))
        ex, ey = _half_extent(cls, r)
        tx = {"left": -TRAVEL * w, "right": TRAVEL * w}.get(a["motion"], 0.0)
        ty = {"up": -TRAVEL * h, "down": TRAVEL * h}.get(a["motion"], 0.0)
        x0, tx = _axis_start(rng, a["hpos"], ex, w, tx)
        y0, ty = _axis_start(rng, a["vpos"], ey, h, ty)
        actors.append(Actor(
            instance_id=ids[i], cls=cls, colour=a["colour"], size=a["size"], motion=a["motion"],
            hpos=a["hpos"], vpos=a["vpos"], radius=r, start=(x0, y0),
            velocity=(tx / (t - 1), ty / (t - 1)), z=int(z[i]),
        ))
    return actors


def _visible_share(actors: Sequence[Actor], h: int, w: int, t: int) -> np.ndarray:
    """[n_actors] the smallest visible share of each actor's shape over all frames."""
    share = np.ones(len(actors))
    for f in range(t):
        shapes = _shapes(actors, h, w, f)
        vis = _visible(actors, shapes)
        area = shapes.reshape(len(actors), -1).sum(1)
        share = np.minimum(share, vis.reshape(len(actors), -1).sum(1) / np.maximum(area, 1))
        share[area == 0] = 0.0
    return share


def _plan_scene(
    rng: np.random.Generator, syn: SyntheticParams, video_id: str, split: str, hard: list[bool], n: int
) -> Scene:
    """One scene: classes, attributes, placement (retried until referents are mostly
    visible) and one sentence per referent (retried until every sentence is unique)."""
    t = syn.frames_per_video
    n_ref = len(hard)
    classes = _classes(rng, hard, n)
    # referents are planned first; shuffled ids keep 'instance 1' from meaning 'the referent'
    ids = [int(i) + 1 for i in rng.permutation(n)]
    for _ in range(200):
        attrs, keys = _assign_attributes(rng, classes, n_ref)
        best: tuple[float, list[Actor]] | None = None
        for _ in range(40):
            actors = _place(rng, syn, classes, attrs, ids)
            share = _visible_share(actors, syn.height, syn.width, t)
            slack = min(share[:n_ref].min() - MIN_VISIBLE_REFERENT, share.min() - MIN_VISIBLE_OTHER)
            if best is None or slack > best[0]:
                best = (slack, actors)
            if slack >= 0:
                break
        actors = best[1]  # type: ignore[index]
        sentences = [_describe(actors, actors[k], keys[k], rng) for k in range(n_ref)]
        if all(s is not None for s in sentences):
            break
    else:  # pragma: no cover - attributes are resampled 200 times; never seen in practice
        raise RuntimeError(f"could not plan unambiguous sentences for {video_id}")
    return Scene(
        video_id=video_id, split=split, height=syn.height, width=syn.width, frames=t,
        actors=tuple(sorted(actors, key=lambda a: a.instance_id)),
        sentences=tuple(sentences),  # type: ignore[arg-type]
        annotated=annotated_indices(t, syn.annotated_per_video),
        render_seed=int(rng.integers(2**31)), masked_frames=t,
    )


def annotated_indices(frames: int, n: int) -> tuple[int, ...]:
    """n distinct 0-based frames spread over the video: the centres of n equal segments."""
    return tuple(int(i) for i in np.floor((np.arange(n) + 0.5) * frames / n))


def _plan_split(syn: SyntheticParams, stream: int, split: str, ids: list[str], max_sentences: int) -> list[Scene]:
    rng = np.random.default_rng([syn.seed, stream])
    n_actors = [int(rng.integers(syn.actors_min, syn.actors_max + 1)) for _ in ids]
    counts = [int(rng.integers(1, min(max_sentences, n) + 1)) for n in n_actors]
    flags = _hard_flags(rng, counts, syn.distractor_fraction)
    scenes = []
    for i, (vid, n, hard) in enumerate(zip(ids, n_actors, flags)):
        n = min(max(n, _needed_actors(hard)), syn.actors_max)
        scene_rng = np.random.default_rng([syn.seed, stream, i])
        hard = _fit_flags(scene_rng, list(hard), n)
        scenes.append(_plan_scene(scene_rng, syn, vid, split, hard, n))
    return scenes


def _jhmdb_names(scenes: list[Scene], seed: int) -> list[Scene]:
    """J-HMDB-like video names and the trailing-frames quirk (every third video loses 1-2
    masks at the end, as some real J-HMDB videos have fewer mask frames than images)."""
    tokens = _video_ids(seed + 7919, len(scenes))
    out = []
    for i, s in enumerate(scenes):
        trailing = (1 + (i // 3) % 2) if i % 3 == 0 else 0
        name = f"{tokens[i][:8]}_{s.action}_f_cm_np{len(s.actors)}_fr_med_{i}"
        out.append(dataclasses.replace(s, video_id=name, masked_frames=max(1, s.frames - trailing)))
    return out


def plan_dataset(params: Params) -> DatasetPlan:
    """Every scene and sentence of the dataset (no pixels): deterministic from data.synthetic."""
    syn = params.data.synthetic
    ids = _video_ids(syn.seed, syn.train_videos + syn.test_videos + 1)
    train_ids, test_ids = ids[: syn.train_videos], ids[syn.train_videos : -1]
    train = _plan_split(syn, _TRAIN, "train", train_ids, MAX_SENTENCES)
    test = _plan_split(syn, _TEST, "test", test_ids, MAX_SENTENCES)
    missed = _plan_split(syn, _MISSED, "missed", ids[-1:], MAX_SENTENCES)[0]
    # J-HMDB shows one annotated actor per video: one sentence, distractors unmasked
    jhmdb = _plan_split(syn, _JHMDB, "jhmdb", [f"j{i}" for i in range(syn.jhmdb_videos)], 1)
    return DatasetPlan(tuple(train), tuple(test), missed, tuple(_jhmdb_names(jhmdb, syn.seed)))


# --------------------------------------------------------------------------------------
# rendering (numpy, vectorised over pixels)
# --------------------------------------------------------------------------------------


def _shape(cls: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """bool [H, W]: the pixels of a class's shape centred at (cx, cy) with radius r."""
    dx, dy = xx - cx, yy - cy
    if cls == "ball":
        return dx * dx + dy * dy <= r * r
    if cls == "box":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.88 * r
    if cls == "bar":
        return (np.abs(dx) <= 1.4 * r) & (np.abs(dy) <= 0.5 * r)
    rr = 1.2 * r  # triangle, apex up: widens linearly from the apex to the base
    return (dy >= -rr) & (dy <= 0.8 * rr) & (np.abs(dx) <= 1.1 * rr * (dy + rr) / (1.8 * rr))


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5  # pixel centres
    return xx, yy


def _shapes(actors: Sequence[Actor], h: int, w: int, t: int) -> np.ndarray:
    """bool [n, H, W]: each actor's full shape in frame t (ignoring occlusion)."""
    xx, yy = _grid(h, w)
    return np.stack([_shape(a.cls, xx, yy, *a.centre(t), a.radius) for a in actors])


def _visible(actors: Sequence[Actor], shapes: np.ndarray) -> np.ndarray:
    """bool [n, H, W]: shapes minus the pixels of actors drawn on top of them."""
    vis = np.zeros_like(shapes)
    covered = np.zeros(shapes.shape[1:], bool)
    for k in sorted(range(len(actors)), key=lambda k: -actors[k].z):  # topmost first
        vis[k] = shapes[k] & ~covered
        covered |= shapes[k]
    return vis


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """float32 [H, W, 3]: smooth low-frequency shading + fine texture + muted clutter shapes
    (grey/brown blobs and bars that are not actors and have no masks)."""
    level = rng.uniform(95, 140)
    tint = rng.uniform(-8, 8, size=3)
    coarse = rng.normal(0, 18, size=(4, 5))
    shade = ndimage.zoom(coarse, (h / 4, w / 5), order=1, mode="nearest")[:h, :w]
    img = level + tint[None, None, :] + shade[:, :, None] + rng.normal(0, 6, size=(h, w, 1))
    img = img + rng.normal(0, 2, size=(h, w, 3))
    xx, yy = _grid(h, w)
    base = min(h, w)
    for _ in range(int(rng.integers(4, 9))):
        tone = np.array(rng.choice([(110, 100, 90), (125, 105, 80), (90, 75, 60), (140, 135, 125), (80, 80, 80)]), np.float32)
        tone = tone + rng.uniform(-10, 10)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.02, 0.05) * base
        cls = str(rng.choice(["ball", "box", "bar"]))
        img[_shape(cls, xx, yy, cx, cy, r)] = tone
    return img.astype(np.float32)


STREAK = ((0.8, 0.45), (1.6, 0.25))  # (offset behind the actor in radii, opacity)


def _draw_motion_streaks(img: np.ndarray, actors: Sequence[Actor], xx: np.ndarray, yy: np.ndarray, t: int) -> None:
    """Fading copies of each moving actor behind it, like motion blur: a per-frame model can
    see which way an actor moves (real actions show in a single frame too). Drawn under every
    actor, so the instance masks (bodies only) stay exact."""
    for a in actors:
        vx, vy = a.velocity
        speed = float(np.hypot(vx, vy))
        if speed == 0.0:
            continue
        cx, cy = a.centre(t)
        colour = np.array(COLOURS[a.colour], np.float32)
        for offset, alpha in STREAK:
            m = _shape(a.cls, xx, yy, cx - vx / speed * offset * a.radius, cy - vy / speed * offset * a.radius, a.radius)
            img[m] = (1 - alpha) * img[m] + alpha * colour


def render_scene(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """frames uint8 [T, H, W, 3] and visible masks bool [T, n_actors, H, W] (instance order)."""
    rng = np.random.default_rng(scene.render_seed)
    h, w, n = scene.height, scene.width, len(scene.actors)
    bg = _background(rng, h, w)
    frames = np.empty((scene.frames, h, w, 3), np.uint8)
    masks = np.empty((scene.frames, n, h, w), bool)
    bottom_up = sorted(range(n), key=lambda k: scene.actors[k].z)
    xx, yy = _grid(h, w)
    for t in range(scene.frames):
        img = bg + rng.normal(0, 1.5, size=(h, w, 1)).astype(np.float32)  # sensor noise
        shapes = _shapes(scene.actors, h, w, t)
        _draw_motion_streaks(img, scene.actors, xx, yy, t)
        for k in bottom_up:
            colour = np.array(COLOURS[scene.actors[k].colour], np.float32)
            m = shapes[k]
            img[m] = colour + rng.normal(0, 4, size=(int(m.sum()), 1)).astype(np.float32)
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        masks[t] = _visible(scene.actors, shapes)
    return frames, masks


# --------------------------------------------------------------------------------------
# writing the layouts
# --------------------------------------------------------------------------------------


def _label(scene: Scene) -> int:
    """A2D-style actor-action code (actor * 10 + action) of the first referent."""
    ref = scene.actor(scene.sentences[0].referent)
    return 10 * (CLASSES.index(ref.cls) + 1) + MOTIONS.index(ref.motion) + 1


def _write_a2d_video(root: Path, scene: Scene) -> VideosetRow:
    frames, masks = render_scene(scene)
    write_mp4(video_path(root, scene.video_id), frames)
    ids = [a.instance_id for a in scene.actors]
    for t in scene.annotated:
        present = [k for k in range(len(ids)) if masks[t, k].any()]  # A2D lists only visible instances
        write_frame_h5(root, scene.video_id, t + 1, [ids[k] for k in present], masks[t, present])
    start = round(1.0 + (int.from_bytes(scene.video_id[:3].encode(), "big") % 900) / 10, 1)
    return VideosetRow(
        vid=scene.video_id, label=_label(scene), start_time=start, end_time=round(start + scene.frames / 24, 3),
        height=scene.height, width=scene.width, total_frames=scene.frames,
        annotated_frames=len(scene.annotated), subset=0 if scene.split in ("train", "missed") else 1,
    )


def write_a2d(root: Path, plan: DatasetPlan) -> None:
    """The A2D Sentences layout under `root` (the missed video in full, and listed as missed)."""
    scenes = [*plan.train, plan.missed, *plan.test]
    rows = [_write_a2d_video(root, s) for s in scenes]
    write_annotations(root, [(s.video_id, str(x.referent), x.text) for s in scenes for x in s.sentences])
    write_missed_videos(root, [plan.missed.video_id])
    write_videoset(root, rows)


def write_jhmdb(root: Path, plan: DatasetPlan) -> None:
    """The J-HMDB Sentences layout: frames as pngs, the referent's mask only (distractors
    are in the pixels but not in the mask), the last frames of some videos unmasked."""
    for s in plan.jhmdb:
        frames, masks = render_scene(s)
        ref = s.sentences[0].referent - 1  # masks are in instance-id order
        write_video_frames(root, s.action, s.video_id, frames)
        write_puppet_mask(root, s.action, s.video_id, masks[: s.masked_frames, ref])
    write_jhmdb_annotations(root, [(s.video_id, x.text) for s in plan.jhmdb for x in s.sentences])


def _clear_stale(parent: Path, name: str) -> None:
    """Remove temp/old siblings left by a killed earlier generation."""
    for p in parent.glob(f".{name}.*-*"):
        shutil.rmtree(p, ignore_errors=True)


def _publish(tmp: Path, final: Path) -> None:
    """Swap a complete temp folder into place; the old folder is moved aside, not mutated."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------
# summary and entry points
# --------------------------------------------------------------------------------------


def _fraction(sentences: Sequence[Sentence]) -> float:
    return round(sum(s.same_class for s in sentences) / len(sentences), 4) if sentences else 0.0


def summarize(plan: DatasetPlan, syn: SyntheticParams) -> dict:
    """Counts of the usable dataset (the missed video excluded), deterministic."""
    splits = {"train": plan.train, "test": plan.test}
    usable = [*plan.train, *plan.test]
    sents = [x for s in usable for x in s.sentences]
    named = Counter(t for x in sents for t in ATTRIBUTE_TYPES if any(k in x.named for k in TYPE_KEYS[t]))
    j_sents = [x for s in plan.jhmdb for x in s.sentences]
    return {
        "source": "synthetic",
        "generated": True,
        "seed": syn.seed,
        "height": syn.height,
        "width": syn.width,
        "frames_per_video": syn.frames_per_video,
        "videos": {k: len(v) for k, v in splits.items()},
        "sentences": {k: sum(len(s.sentences) for s in v) for k, v in splits.items()},
        "annotated_frames": {k: sum(len(s.annotated) for s in v) for k, v in splits.items()},
        "mean_actors_per_video": round(float(np.mean([len(s.actors) for s in usable])), 4),
        "distractor_fraction": syn.distractor_fraction,
        "same_class_fraction": _fraction(sents),
        "same_class_fraction_by_split": {k: _fraction([x for s in v for x in s.sentences]) for k, v in splits.items()},
        "attribute_types": {t: named[t] for t in ATTRIBUTE_TYPES},
        "disambiguating_attribute_types": {t: sum(x.key == t for x in sents) for t in ATTRIBUTE_TYPES},
        "classes": list(CLASSES),
        "colours": list(COLOURS),
        "missed_videos": [plan.missed.video_id],
        "jhmdb": {
            "videos": len(plan.jhmdb),
            "sentences": len(j_sents),
            "frames": sum(s.frames for s in plan.jhmdb),
            "masked_frames": sum(s.masked_frames for s in plan.jhmdb),
            "videos_with_unmasked_tail": sum(s.masked_frames < s.frames for s in plan.jhmdb),
            "mean_actors_per_video": round(float(np.mean([len(s.actors) for s in plan.jhmdb])), 4),
            "same_class_fraction": _fraction(j_sents),
            "actions": dict(sorted(Counter(s.action for s in plan.jhmdb).items())),
        },
    }


def generate(params: Params) -> dict:
    """Write params.raw_a2d and params.raw_jhmdb (atomically, as whole folders) and
    outputs/raw/synthetic_summary.json; return the summary. A no-op for data.source=real."""
    if params.data.source != "synthetic":
        # raw_a2d then points at the user's real dataset: never touch it. Still leave
        # outputs/raw/ with a summary, so the pipeline's 'generate' stage is a clean no-op.
        summary = {"source": params.data.source, "generated": False}
        write_json(params.outputs / "raw" / "synthetic_summary.json", summary)
        return summary
    a2d_final, jhmdb_final = params.raw_a2d, params.raw_jhmdb
    assert jhmdb_final is not None  # always set for the synthetic source
    parent = a2d_final.parent
    parent.mkdir(parents=True, exist_ok=True)
    for final in (a2d_final, jhmdb_final):
        _clear_stale(final.parent, final.name)
    plan = plan_dataset(params)
    a2d_tmp = Path(tempfile.mkdtemp(prefix=f".{a2d_final.name}.tmp-", dir=parent))
    jhmdb_tmp = Path(tempfile.mkdtemp(prefix=f".{jhmdb_final.name}.tmp-", dir=jhmdb_final.parent))
    try:
        write_a2d(a2d_tmp, plan)
        write_jhmdb(jhmdb_tmp, plan)
        _publish(a2d_tmp, a2d_final)
        _publish(jhmdb_tmp, jhmdb_final)
    finally:
        for tmp in (a2d_tmp, jhmdb_tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(plan, params.data.synthetic)
    write_json(params.outputs / "raw" / "synthetic_summary.json", summary)
    return summary


def format_summary(summary: dict, a2d: Path, jhmdb: Path | None, seconds: float) -> str:
    v, s, j = summary["videos"], summary["sentences"], summary["jhmdb"]
    return "\n".join([
        f"synthetic A2D  -> {a2d}: {v['train']} train / {v['test']} test videos, "
        f"{s['train']} / {s['test']} sentences, {summary['mean_actors_per_video']:.2f} actors per video, "
        f"1 missed video ({summary['missed_videos'][0]})",
        f"  same-class distractor share {summary['same_class_fraction']:.2f} (target {summary['distractor_fraction']:.2f}); "
        f"disambiguating attributes {summary['disambiguating_attribute_types']}",
        f"synthetic J-HMDB -> {jhmdb}: {j['videos']} videos, {j['sentences']} sentences, "
        f"{j['videos_with_unmasked_tail']} with unmasked trailing frames",
        f"seed {summary['seed']}, {seconds:.1f} s",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("Generate the synthetic dataset in the A2D Sentences and J-HMDB Sentences layouts.").parse_args(argv)
    params = params_from(args)
    start = time.perf_counter()
    summary = generate(params)
    if not summary["generated"]:
        print(f"data.source is {params.data.source!r}: nothing generated (the real dataset is read in place)")
        return 0
    print(format_summary(summary, params.raw_a2d, params.raw_jhmdb, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
