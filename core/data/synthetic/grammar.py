"""The words of the scenes and the sentences: attribute vocabulary, wording, parsing, matching.

A sentence names a referent's class plus attributes that single it out among the clip's
actors; `parse_sentence` reads the named attributes back from the words alone (the inverse
of `word_sentence`), and `matching_actors` says which actors they are true for. A group
sentence (`describe_group`, for the MeViS twin) names a set of same-class actors in the plural
("the two red balls") and is true of exactly that set.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
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
    """The attributes a sentence names, read back from its words (the inverse of wording)."""
    return dict(tag for tag in word_fields(text.lower().split()) if tag is not None)


def word_fields(words: Sequence[str]) -> list[tuple[str, str] | None]:
    """Each lower-case word's (field, value) when the word names an attribute, else None.

    Direction words after a motion verb are motions; other left/right/top/bottom are
    positions; 'still' or the 'moving' of 'not moving' is the still motion. Only the word that
    carries the value is tagged (the 'red' of 'red ball', the 'left' of 'moving left').
    """
    lookup = {w: ("class", c) for c, ws in CLASS_WORDS.items() for w in ws}
    lookup.update({c: ("colour", c) for c in COLOURS})
    lookup.update({w: ("size", s) for s, ws in SIZE_WORDS.items() for w in ws})
    tags: list[tuple[str, str] | None] = []
    for i, w in enumerate(words):
        prev = words[i - 1] if i else ""
        if w in lookup:
            tags.append(lookup[w])
        elif w in ("left", "right", "up", "down") and prev in MOTION_VERBS:
            tags.append(("motion", w))
        elif w in HPOS:
            tags.append(("hpos", w))
        elif w in VPOS:
            tags.append(("vpos", w))
        elif w == "still" or (w == "moving" and prev == "not"):
            tags.append(("motion", "still"))
        else:
            tags.append(None)
    return tags


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


def _described(named: dict[str, str], rng: np.random.Generator, plural: bool) -> list[str]:
    """The words of a description after its determiner: size and colour, the noun, then the
    position, motion and a trailing colour (synonyms and word order drawn from `rng`, in one
    order for both numbers, so a singular description draws exactly what it always drew)."""
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
        post.append((_plural_motion_phrase if plural else _motion_phrase)(named["motion"], rng))
    if len(post) == 2 and rng.random() < 0.5:
        post.reverse()
    if colour_after:
        post.append(f"that {'are' if plural else 'is'} {named['colour']}")
    return [*pre, PLURAL_WORDS[noun] if plural else noun, *post]


def word_sentence(named: dict[str, str], rng: np.random.Generator) -> str:
    """Text for the named attributes, from templates with synonyms and varied word order."""
    words = _described(named, rng, plural=False)
    article = str(rng.choice(["the", "the", "a", ""]))
    return " ".join(w for w in [article, *words] if w)


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


# --------------------------------------------------------------------------------------
# plural sentences: one expression about a SET of same-class actors (the MeViS twin)
# --------------------------------------------------------------------------------------

PLURAL_WORDS = {w: w + ("es" if w.endswith("x") else "s") for ws in CLASS_WORDS.values() for w in ws}
COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
_COUNT_OF = {**{w: n for n, w in COUNT_WORDS.items()}, "both": 2}
_SINGULAR = {p: s for s, p in PLURAL_WORDS.items()}
PLURAL_STILL_PHRASES = ("standing still", "that are not moving", "staying still", "that are still")


@dataclass(frozen=True)
class GroupSentence:
    """A plural sentence about several actors ("the two red balls"): true of exactly `referents`."""

    text: str
    referents: tuple[int, ...]  # instance ids, ascending, >= 2
    named: dict[str, str]  # the attributes the text names (keys of Actor.attributes()); all referents share them
    key: str | None  # the attribute type that sets the group apart (None: the class alone does)


def parse_group_sentence(text: str) -> tuple[dict[str, str], int | None]:
    """(named attributes, the count the text states or None) of a plural sentence.

    The inverse of `word_group_sentence`: plural nouns are read as their singular, the
    attributes as `parse_sentence` reads them, the count from 'two', 'three', ... or 'both'.
    """
    words = text.lower().split()
    counts = [_COUNT_OF[w] for w in words if w in _COUNT_OF]
    named = parse_sentence(" ".join(_SINGULAR.get(w, w) for w in words))
    return named, (counts[0] if len(counts) == 1 else None)


def _plural_motion_phrase(motion: str, rng: np.random.Generator) -> str:
    if motion == "still":
        return str(rng.choice(PLURAL_STILL_PHRASES))
    verb = str(rng.choice(MOTION_VERBS))
    return str(rng.choice([f"{verb} {motion}", f"that are {verb} {motion}", f"which are {verb} {motion}"]))


def word_group_sentence(named: dict[str, str], count: int, rng: np.random.Generator) -> str:
    """Plural text for `count` actors with the named attributes: "the two small red balls"."""
    if count not in COUNT_WORDS:
        raise ValueError(f"a group sentence names 2..{max(COUNT_WORDS)} actors, got {count}")
    words = _described(named, rng, plural=True)
    number = COUNT_WORDS[count]
    det = str(rng.choice([f"the {number}", f"the {number}", "both" if count == 2 else f"all {number}"]))
    return " ".join([det, *words])


def describe_group(actors: Sequence[Actor], members: Sequence[int], rng: np.random.Generator) -> GroupSentence | None:
    """A plural sentence true of exactly the actors `members` (instance ids), or None.

    The members must share a class. Tries the class alone, then one shared attribute, then
    two, each in random order, and keeps the first whose matching set is exactly `members`;
    may then add one more attribute all members share (the matching set cannot grow). The
    text is checked: parsed back, it names exactly the members and states their number.
    """
    group = sorted(int(m) for m in members)
    refs = [a for a in actors if a.instance_id in group]
    if len(group) < 2 or len(refs) != len(group) or len({a.cls for a in refs}) != 1:
        return None
    shared = {k: v for k, v in refs[0].attributes().items() if all(a.attributes()[k] == v for a in refs)}
    fields = [str(f) for f in rng.permutation([f for f in FIELD_VALUES if f in shared])]
    candidates = [()] + [(f,) for f in fields] + list(itertools.combinations(fields, 2))
    for keys in candidates:
        named = {"class": shared["class"], **{k: shared[k] for k in keys}}
        if matching_actors(actors, named) == group:
            break
    else:
        return None
    key = next((t for t in ATTRIBUTE_TYPES if keys and keys[0] in TYPE_KEYS[t]), None)
    extra = [k for k in shared if k not in named]
    if extra and rng.random() < 0.35:
        k = str(rng.choice(extra))
        named[k] = shared[k]
    text = word_group_sentence(named, len(group), rng)
    parsed, count = parse_group_sentence(text)
    if parsed != named or count != len(group) or matching_actors(actors, parsed) != group:
        raise AssertionError(f"group sentence {text!r} does not read back as {named} of {len(group)} actors")
    return GroupSentence(text=text, referents=tuple(group), named=named, key=key)
