"""Planning (pure: scenes + sentences, no pixels): who is in a scene, with which attributes,
where, and what is said about them. Deterministic from `data.synthetic` (seed, sizes, resolution).

What it tests is what CVLS is about: language-guided disambiguation. Each video shows a few
actors (ball / box / triangle / bar) with a colour, a size, a motion and a position (the
half of the frame its whole trajectory stays in). In a `distractor_fraction` share of the
sentences the referent shares its class with another actor of the clip - a *semantically
similar distractor* that often copies the referent's other attributes - and the sentence
names an attribute that tells them apart ("the small red ball", "the box moving left").
Every sentence is checked programmatically to match exactly one actor, and videos carry up
to three sentences about different actors, so a model that ignores the sentence must fail.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

import numpy as np

from core.config import Params
from core.data.synthetic.grammar import (
    ATTRIBUTE_TYPES,
    CLASSES,
    FIELD_VALUES,
    TYPE_KEYS,
    GroupSentence,
    describe,
    describe_group,
    matching_actors,
)
from core.data.synthetic.render import actor_shapes, half_extent, visible_masks
from core.data.synthetic.scene import Actor, DatasetPlan, Scene
from core.sections import SyntheticParams

SIZE_RADIUS = {"small": 0.10, "large": 0.16}  # fraction of min(H, W): several feature cells even at stride 4
TRAVEL = 0.15  # a moving actor crosses this fraction of the frame over the whole video
MID_MARGIN = 0.1  # centres stay this fraction of the frame away from the midline: position is clear
MIN_VISIBLE_REFERENT = 0.7  # visible share of a referent's shape in every frame
MIN_VISIBLE_OTHER = 0.3
MAX_SENTENCES = 3
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# random streams: one SeedSequence per purpose, so changing one count does not reshuffle the rest
_IDS, _TRAIN, _TEST, _JHMDB, _MISSED = range(1, 6)


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
    return {field: str(rng.choice(values)) for field, values in FIELD_VALUES.items()}


def _assign_attributes(
    rng: np.random.Generator, classes: list[str], n_ref: int
) -> tuple[list[dict[str, str]], list[str]]:
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
    return str(rng.choice([v for v in FIELD_VALUES[field] if v != value]))


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
        ex, ey = half_extent(cls, r)
        tx = {"left": -TRAVEL * w, "right": TRAVEL * w}.get(a["motion"], 0.0)
        ty = {"up": -TRAVEL * h, "down": TRAVEL * h}.get(a["motion"], 0.0)
        x0, tx = _axis_start(rng, a["hpos"], ex, w, tx)
        y0, ty = _axis_start(rng, a["vpos"], ey, h, ty)
        actors.append(
            Actor(
                instance_id=ids[i],
                cls=cls,
                colour=a["colour"],
                size=a["size"],
                motion=a["motion"],
                hpos=a["hpos"],
                vpos=a["vpos"],
                radius=r,
                start=(x0, y0),
                velocity=(tx / (t - 1), ty / (t - 1)),
                z=int(z[i]),
            )
        )
    return actors


def _visible_share(actors: Sequence[Actor], h: int, w: int, t: int) -> np.ndarray:
    """[n_actors] the smallest visible share of each actor's shape over all frames."""
    share = np.ones(len(actors))
    for f in range(t):
        shapes = actor_shapes(actors, h, w, f)
        vis = visible_masks(actors, shapes)
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
        sentences = [describe(actors, actors[k], keys[k], rng) for k in range(n_ref)]
        if all(s is not None for s in sentences):
            break
    else:  # pragma: no cover - attributes are resampled 200 times; never seen in practice
        raise RuntimeError(f"could not plan unambiguous sentences for {video_id}")
    return Scene(
        video_id=video_id,
        split=split,
        height=syn.height,
        width=syn.width,
        frames=t,
        actors=tuple(sorted(actors, key=lambda a: a.instance_id)),
        sentences=tuple(sentences),  # type: ignore[arg-type]
        annotated=annotated_indices(t, syn.annotated_per_video),
        render_seed=int(rng.integers(2**31)),
        masked_frames=t,
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
# the twins' extras (Ref-YouTube-VOS / MeViS layouts): a valid split and group sentences.
# New random streams only: the A2D / J-HMDB plan above is unchanged by them.
# --------------------------------------------------------------------------------------

_VALID, _GROUPS = 6, 7
GROUP_FRACTION = 0.2  # target share of group (multi-object) sentences in a MeViS twin split


def plan_valid(params: Params, n: int) -> tuple[Scene, ...]:
    """`n` more scenes (split "valid"), planned like the train scenes from their own random
    stream; their ids continue `plan_dataset`'s id sequence, so they clash with none of its ids."""
    syn = params.data.synthetic
    if n < 1:
        raise ValueError(f"need at least 1 valid video, got {n}")
    used = syn.train_videos + syn.test_videos + 1
    ids = _video_ids(syn.seed, used + n)[used:]
    return tuple(_plan_split(syn, _VALID, "valid", ids, MAX_SENTENCES))


def group_candidates(scene: Scene) -> list[tuple[int, ...]]:
    """Sets (instance ids, ascending) of >= 2 same-class actors that the class plus at most two
    attribute values single out (no other actor matches them), each member visible for at
    least MIN_VISIBLE_OTHER of its shape in every frame; sorted, no repeats."""
    visible = _visible_share(scene.actors, scene.height, scene.width, scene.frames)
    share = {a.instance_id: float(v) for a, v in zip(scene.actors, visible)}
    fields = list(FIELD_VALUES)
    out: set[tuple[int, ...]] = set()
    for a in scene.actors:
        attrs = a.attributes()
        for k in range(3):
            for keys in itertools.combinations(fields, k):
                group = tuple(matching_actors(scene.actors, {"class": a.cls, **{f: attrs[f] for f in keys}}))
                if len(group) >= 2 and all(share[i] >= MIN_VISIBLE_OTHER for i in group):
                    out.add(group)
    return sorted(out)


def plan_groups(
    scenes: Sequence[Scene], seed: int, fraction: float = GROUP_FRACTION, stream: int = 0
) -> dict[str, tuple[GroupSentence, ...]]:
    """Group sentences for a split: video id -> its (at most one) group sentence.

    Aims at `fraction` of the split's sentences (its scenes' single-referent sentences plus
    these): round(fraction * singles / (1 - fraction)) scenes with a `group_candidates` set
    each get one sentence about one of its sets. Scenes with a *strict* set (a strict subset
    of its class, so an attribute must tell the members from their same-class distractors:
    "the two red bars" beside a blue bar) are drawn first, at random, then the others (whose
    sets are a whole class: "both boxes"); a scene's set is drawn among its strict ones if it
    has any. Deterministic from (seed, stream) and the scenes.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng([seed, _GROUPS, stream])
    singles = sum(len(s.sentences) for s in scenes)
    eligible = []  # (not strict, random rank, scene index, the sets to draw from)
    for i, s in enumerate(scenes):
        cands = group_candidates(s)
        cls = {a.instance_id: a.cls for a in s.actors}
        strict = [g for g in cands if sum(c == cls[g[0]] for c in cls.values()) > len(g)]
        eligible.append((not strict, i, strict or cands))
    ranks = rng.permutation(len(scenes))
    eligible = sorted((e for e in eligible if e[2]), key=lambda e: (e[0], int(ranks[e[1]])))
    n = min(len(eligible), int(round(fraction * singles / (1 - fraction))))
    out: dict[str, tuple[GroupSentence, ...]] = {}
    for _, i, pool in sorted(eligible[:n], key=lambda e: e[1]):
        scene = scenes[i]
        group = pool[int(rng.integers(len(pool)))]
        sentence = describe_group(scene.actors, group, rng)
        if sentence is None:  # pragma: no cover - every candidate set is singled out by some attributes
            raise RuntimeError(f"no group sentence for {group} of {scene.video_id}")
        out[scene.video_id] = (sentence,)
    return out
