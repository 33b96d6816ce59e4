"""The synthetic scenes in the Ref-YouTube-VOS and MeViS layouts, so the real readers
(`core.data.ytvos`, `core.data.mevis`) run on them in CI.

Both twins take the A2D plan (`plan.plan_dataset`) plus a few extra scenes for a split without
masks (`plan.plan_valid`), render each scene once (`render.render_scene`, visible masks in
instance order) and write it with the layout writers `core.data.ytvos_write` /
`core.data.mevis_write`. The missed video and the J-HMDB scenes are A2D / J-HMDB quirks and are
left out.

Ref-YouTube-VOS (`write_ytvos`):
    train    every A2D train AND test scene: the release's offline test set is chosen later by
             `core.data.ytvos.offline_split`, never by the layout. Frames are JPEG named every
             5th frame number (00000, 00005, ...); the scene's annotated frames (A2D's) get a
             palette PNG of instance ids (the visible masks); meta.json lists every actor with
             category = its class and the annotated frames it has pixels in; one expression per
             sentence with obj_id = its referent.
    valid    the extra scenes: frames and expressions only (no masks, no obj_id).
    synthetic_ground_truth.json: the train videos' classes and each sentence's disambiguating
             attribute type (`core.data.ground_truth`), which `read_ytvos` applies (strata).

MeViS (`write_mevis`):
    train    the A2D train scenes;  valid_u  the A2D test scenes (masked, read as "test");
    valid    the extra scenes, expressions as text only and no mask_dict.json.
    Every referred actor is an object with a split-unique anno_id and an RLE (or null where it
    is fully occluded) in EVERY frame (MeViS annotates every frame, and the renderer knows
    them all). Besides the single-referent sentences, about GROUP_FRACTION of a split's
    expressions are group sentences ("the two red squares", `plan.plan_groups`) with several
    anno_ids: each is checked to match exactly its referent set, and the reader's union mask
    is the OR of the members' masks. `core.data.mevis` reads no ground-truth sidecar
    (Video.classes is None), so none is written.

`generate_ytvos` / `generate_mevis` write a whole root atomically (`core.io.staged_dir`): a
failed run keeps the previous folder; the same plan writes the same files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from core.config import Params
from core.data import mevis_write, ytvos_write
from core.data.ground_truth import write_ground_truth
from core.data.synthetic.grammar import GroupSentence
from core.data.synthetic.plan import GROUP_FRACTION, plan_groups, plan_valid
from core.data.synthetic.render import render_scene
from core.data.synthetic.scene import DatasetPlan, Scene
from core.data.synthetic.write import summarize
from core.data.ytvos import GROUND_TRUTH as YTVOS_GROUND_TRUTH
from core.io import staged_dir

YTVOS_TRAIN, YTVOS_VALID = "train", "valid"
MEVIS_SPLITS = ("train", "valid_u", "valid")
# plan_groups' random stream per MeViS split (so each split's share is drawn on its own)
_GROUP_STREAMS = {split: k for k, split in enumerate(MEVIS_SPLITS)}


def _id_maps(scene: Scene, masks: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W] instance ids of the visible masks (they never overlap), 0 = background."""
    ids = np.zeros(masks.shape[:1] + masks.shape[2:], np.uint8)
    for k, a in enumerate(scene.actors):
        ids[masks[:, k]] = a.instance_id
    return ids


# --------------------------------------------------------------------------------------
# Ref-YouTube-VOS
# --------------------------------------------------------------------------------------


def write_ytvos(root: Path, plan: DatasetPlan, valid: Sequence[Scene] = ()) -> dict:
    """The Ref-YouTube-VOS layout under `root` (see the module docstring); returns its counts."""
    root = Path(root)
    train = [*plan.train, *plan.test]
    objects: dict[str, dict[int, tuple[str, list[str]]]] = {}
    exprs: dict[str, tuple[list[str], list[tuple[str, int | None]]]] = {}
    for s in train:
        frames, masks = render_scene(s)
        names = ytvos_write.write_frames(root, YTVOS_TRAIN, s.video_id, frames)
        annotated = list(s.annotated)
        ids = _id_maps(s, masks)[annotated]
        ann_names = [names[t] for t in annotated]
        ytvos_write.write_id_maps(root, s.video_id, ann_names, ids, YTVOS_TRAIN)
        categories = {a.instance_id: a.cls for a in s.actors}
        objects[s.video_id] = ytvos_write.objects_from_id_maps(categories, ann_names, ids)
        exprs[s.video_id] = (names, [(x.text, x.referent) for x in s.sentences])
    ytvos_write.write_meta(root, objects, YTVOS_TRAIN)
    ytvos_write.write_meta_expressions(root, YTVOS_TRAIN, exprs)
    valid_exprs: dict[str, tuple[list[str], list[tuple[str, int | None]]]] = {}
    for s in valid:
        frames, _ = render_scene(s)
        names = ytvos_write.write_frames(root, YTVOS_VALID, s.video_id, frames)
        valid_exprs[s.video_id] = (names, [(x.text, None) for x in s.sentences])
    ytvos_write.write_meta_expressions(root, YTVOS_VALID, valid_exprs)
    write_ground_truth(
        root / YTVOS_GROUND_TRUTH,
        {s.video_id: {a.instance_id: a.cls for a in s.actors} for s in train},
        [(s.video_id, x.referent, x.text, x.key) for s in train for x in s.sentences],
    )
    return {
        "layout": "ref-youtube-vos",
        "videos": {YTVOS_TRAIN: len(train), YTVOS_VALID: len(valid)},
        "expressions": {YTVOS_TRAIN: sum(len(s.sentences) for s in train), YTVOS_VALID: _count(valid)},
        "annotated_frames": sum(len(s.annotated) for s in train),
    }


def generate_ytvos(root: Path, plan: DatasetPlan, valid: Sequence[Scene] = ()) -> dict:
    """`write_ytvos` into a staged folder published as `root` only when complete."""
    with staged_dir(root) as tmp:
        summary = write_ytvos(tmp, plan, valid)
    return summary


# --------------------------------------------------------------------------------------
# MeViS
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MevisObject:
    """Where an anno_id of the MeViS twin comes from (the tests map masks back with it)."""

    split: str
    video_id: str
    instance_id: int


def _count(scenes: Iterable[Scene]) -> int:
    return sum(len(s.sentences) for s in scenes)


def mevis_splits(plan: DatasetPlan, valid: Sequence[Scene] = ()) -> dict[str, tuple[Scene, ...]]:
    """MeViS split -> its scenes: train = A2D train, valid_u = A2D test, valid = `valid`."""
    return {"train": tuple(plan.train), "valid_u": tuple(plan.test), "valid": tuple(valid)}


def mevis_groups(
    plan: DatasetPlan, valid: Sequence[Scene] = (), seed: int = 0, fraction: float = GROUP_FRACTION
) -> dict[str, dict[str, tuple[GroupSentence, ...]]]:
    """MeViS split -> video id -> its group sentences (`plan.plan_groups`, one stream per split)."""
    return {
        split: plan_groups(scenes, seed, fraction, _GROUP_STREAMS[split])
        for split, scenes in mevis_splits(plan, valid).items()
    }


def write_mevis(
    root: Path,
    plan: DatasetPlan,
    valid: Sequence[Scene] = (),
    groups: Mapping[str, Mapping[str, Sequence[GroupSentence]]] | None = None,
) -> dict:
    """The MeViS layout under `root` (see the module docstring); returns its counts.

    `groups` (split -> video id -> group sentences, e.g. `mevis_groups`) adds the multi-object
    expressions, written after the video's single-referent ones. anno_ids: `mevis_objects`.
    """
    root = Path(root)
    groups = groups or {}
    anno_of = {(o.split, o.video_id, o.instance_id): aid for aid, o in mevis_objects(plan, valid, groups).items()}
    summary: dict = {"layout": "mevis", "videos": {}, "expressions": {}, "group_expressions": {}}
    for split, scenes in mevis_splits(plan, valid).items():
        specs = []
        n_groups = 0
        for s in scenes:
            frames, masks = render_scene(s)
            extra = groups.get(split, {}).get(s.video_id, ())
            order = {a.instance_id: k for k, a in enumerate(s.actors)}
            anno = {i: anno_of[split, s.video_id, i] for i in order if (split, s.video_id, i) in anno_of}
            objects = {aid: masks[:, order[i]] for i, aid in anno.items()}
            refs = [(x.text, (x.referent,)) for x in s.sentences] + [(g.text, g.referents) for g in extra]
            exps = [mevis_write.MetaExpression(t, tuple(anno[i] for i in r) if anno else None) for t, r in refs]
            n_groups += len(extra)
            specs.append(mevis_write.MevisVideoSpec(s.video_id, frames, objects, exps))
        mevis_write.write_split(root, split, specs)
        summary["videos"][split] = len(scenes)
        summary["expressions"][split] = _count(scenes) + n_groups
        summary["group_expressions"][split] = n_groups
    return summary


def mevis_objects(
    plan: DatasetPlan,
    valid: Sequence[Scene] = (),
    groups: Mapping[str, Mapping[str, Sequence[GroupSentence]]] | None = None,
) -> dict[int, MevisObject]:
    """anno_id -> its (split, video, instance) as `write_mevis` numbers them for the same inputs:
    the referred actors of the masked splits, from 0, in split, video and instance order."""
    groups = groups or {}
    out: dict[int, MevisObject] = {}
    for split, scenes in mevis_splits(plan, valid).items():
        if split == "valid":
            continue
        for s in scenes:
            extra = groups.get(split, {}).get(s.video_id, ())
            for i in sorted({x.referent for x in s.sentences} | {i for g in extra for i in g.referents}):
                out[len(out)] = MevisObject(split, s.video_id, i)
    return out


def generate_mevis(
    root: Path,
    plan: DatasetPlan,
    valid: Sequence[Scene] = (),
    seed: int = 0,
    group_fraction: float = GROUP_FRACTION,
) -> dict:
    """Plan the group sentences (`mevis_groups`), then `write_mevis` into a staged folder
    published as `root` only when complete; returns the counts."""
    groups = mevis_groups(plan, valid, seed, group_fraction)
    with staged_dir(root) as tmp:
        summary = write_mevis(tmp, plan, valid, groups)
    return summary


# --------------------------------------------------------------------------------------
# the generate stage's writers (core.data.registry)
# --------------------------------------------------------------------------------------


def _valid(params: Params) -> tuple[Scene, ...]:
    """The split without masks, for the prediction export: a quarter of the test size."""
    return plan_valid(params, max(1, params.data.synthetic.test_videos // 4))


def _summary(params: Params, plan: DatasetPlan, twin: dict) -> dict:
    """outputs/raw/synthetic_summary.json: the A2D plan's counts and the twin's."""
    return summarize(plan, params.data.synthetic) | {"dataset": params.data.dataset, "twin": twin}


def write_ytvos_twin(params: Params, plan: DatasetPlan, root: Path) -> dict:
    """The scenes in the Ref-YouTube-VOS layout at `root`, with a valid split; the summary."""
    return _summary(params, plan, generate_ytvos(root, plan, _valid(params)))


def write_mevis_twin(params: Params, plan: DatasetPlan, root: Path) -> dict:
    """The scenes in the MeViS layout at `root` (its multi-object expressions too), with a valid split."""
    return _summary(params, plan, generate_mevis(root, plan, _valid(params), seed=params.data.synthetic.seed))
