"""The words of the scenes and the sentences: attribute vocabulary, wording, parsing, matching.

A sentence names a referent's class plus attributes that single it out among the clip's
actors; `parse_sentence` reads the named attributes back from the words alone (the inverse
of `word_sentence`), and `matching_actors` says which actors they are true for.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from core.data.synthetic.scene import Actor, Sentence

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
MOTIONS = ("left", "right", "up", "down", "still")
MOTION_VERBS = ("moving", "going", "heading", "sliding")
STILL_PHRASES = ("standing still", "that is not moving", "staying still", "that is still")
HPOS, VPOS = ("left", "right"), ("top", "bottom")
# The values of each attribute field (the keys of Actor.attributes() but the class). The
# order is the order attributes are sampled in: changing it reshuffles every scene.
FIELD_VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "size": SIZES,
    "motion": MOTIONS,
    "hpos": HPOS,
    "vpos": VPOS,
}
ATTRIBUTE_TYPES = ("colour", "size", "position", "motion")
TYPE_KEYS = {"colour": ("colour",), "size": ("size",), "position": ("hpos", "vpos"), "motion": ("motion",)}


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


def describe(actors: Sequence[Actor], ref: Actor, key: str, rng: np.random.Generator) -> Sentence | None:
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
        extra = [k for k in attrs if k not in named]  # the class is always named
        k = str(rng.choice(extra))
        named[k] = attrs[k]
    text = word_sentence(named, rng)
    same = sum(a.cls == ref.cls for a in actors) > 1
    return Sentence(text=text, referent=ref.instance_id, named=named, key=t, same_class=same)
