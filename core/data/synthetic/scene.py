"""What a planned scene is: its actors, the sentences about them, and the dataset of scenes.

Pure data (no randomness, no pixels): `plan` builds these, `render` draws them, `write`
lays them out on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

# J-HMDB action folders (real J-HMDB action names), from the referent's motion.
ACTIONS = {"left": "walk", "right": "run", "up": "jump", "down": "sit", "still": "stand"}


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
        return {
            "class": self.cls,
            "colour": self.colour,
            "size": self.size,
            "hpos": self.hpos,
            "vpos": self.vpos,
            "motion": self.motion,
        }


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
