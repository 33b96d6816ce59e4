"""Rendering (numpy, vectorised over pixels): frames and per-instance visible masks of a scene.

`SHAPES` is the one description of the classes' shapes: `shape_mask` draws from it and
`half_extent` (which planning uses to keep actors inside the frame) reads the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from core.data.synthetic.grammar import COLOURS
from core.data.synthetic.scene import Actor, Scene


@dataclass(frozen=True)
class Shape:
    """A class's shape about its centre, in units of its radius r."""

    kind: str  # "disc" | "rect" | "triangle" (apex up, widening linearly to a flat base)
    half_width: float  # the widest half width (a disc's radius; a triangle's at the base)
    half_height: float  # the largest vertical distance from the centre (a triangle's apex)
    base: float = 0.0  # triangle: the base's distance below the centre, in half_heights


SHAPES: dict[str, Shape] = {
    "ball": Shape("disc", 1.0, 1.0),
    "box": Shape("rect", 0.88, 0.88),
    "triangle": Shape("triangle", 1.32, 1.2, base=0.8),
    "bar": Shape("rect", 1.4, 0.5),
}


def half_extent(cls: str, r: float) -> tuple[float, float]:
    """Half width and half height of a class's shape of radius r."""
    s = SHAPES[cls]
    return s.half_width * r, s.half_height * r


def shape_mask(cls: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """bool [H, W]: the pixels of a class's shape centred at (cx, cy) with radius r."""
    s = SHAPES[cls]
    dx, dy = xx - cx, yy - cy
    if s.kind == "disc":
        rx = s.half_width * r
        return dx * dx + dy * dy <= rx * rx
    if s.kind == "rect":
        return (np.abs(dx) <= s.half_width * r) & (np.abs(dy) <= s.half_height * r)
    rr = s.half_height * r  # triangle, apex up: widens linearly from the apex to the base
    return (dy >= -rr) & (dy <= s.base * rr) & (np.abs(dx) <= s.half_width * r * (dy + rr) / ((1 + s.base) * rr))


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 x and y [H, W] of the pixel centres."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5  # pixel centres
    return xx, yy


def actor_shapes(actors: Sequence[Actor], h: int, w: int, t: int) -> np.ndarray:
    """bool [n, H, W]: each actor's full shape in frame t (ignoring occlusion)."""
    xx, yy = pixel_grid(h, w)
    return np.stack([shape_mask(a.cls, xx, yy, *a.centre(t), a.radius) for a in actors])


def visible_masks(actors: Sequence[Actor], shapes: np.ndarray) -> np.ndarray:
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
    xx, yy = pixel_grid(h, w)
    base = min(h, w)
    for _ in range(int(rng.integers(4, 9))):
        tone = np.array(
            rng.choice([(110, 100, 90), (125, 105, 80), (90, 75, 60), (140, 135, 125), (80, 80, 80)]), np.float32
        )
        tone = tone + rng.uniform(-10, 10)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.02, 0.05) * base
        cls = str(rng.choice(["ball", "box", "bar"]))
        img[shape_mask(cls, xx, yy, cx, cy, r)] = tone
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
            bx, by = cx - vx / speed * offset * a.radius, cy - vy / speed * offset * a.radius
            m = shape_mask(a.cls, xx, yy, bx, by, a.radius)
            img[m] = (1 - alpha) * img[m] + alpha * colour


def render_scene(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """frames uint8 [T, H, W, 3] and visible masks bool [T, n_actors, H, W] (instance order)."""
    rng = np.random.default_rng(scene.render_seed)
    h, w, n = scene.height, scene.width, len(scene.actors)
    bg = _background(rng, h, w)
    frames = np.empty((scene.frames, h, w, 3), np.uint8)
    masks = np.empty((scene.frames, n, h, w), bool)
    bottom_up = sorted(range(n), key=lambda k: scene.actors[k].z)
    xx, yy = pixel_grid(h, w)
    for t in range(scene.frames):
        img = bg + rng.normal(0, 1.5, size=(h, w, 1)).astype(np.float32)  # sensor noise
        shapes = actor_shapes(scene.actors, h, w, t)
        _draw_motion_streaks(img, scene.actors, xx, yy, t)
        for k in bottom_up:
            colour = np.array(COLOURS[scene.actors[k].colour], np.float32)
            m = shapes[k]
            img[m] = colour + rng.normal(0, 4, size=(int(m.sum()), 1)).astype(np.float32)
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        masks[t] = visible_masks(scene.actors, shapes)
    return frames, masks
