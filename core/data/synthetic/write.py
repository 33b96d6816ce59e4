"""Writing the dataset: the A2D Sentences layout (`params.raw_root("a2d")`), the J-HMDB
Sentences twin (`params.raw_root("jhmdb")`, test only) and outputs/raw/synthetic_summary.json;
`generate`, the generate stage, writes data.dataset's twin (core.data.registry).

The layouts are written by the writers of `core.data.a2d` and `core.data.jhmdb`, so the real
readers, extraction and everything downstream run unchanged on them. Generation writes into
hidden temp folders next to the final ones (`core.io.staged_dir`) and renames them into place
only when complete, so a killed run never leaves a folder that looks finished; a rerun with
the same params regenerates the same files.

Both layouts also get the ground truth the real releases lack (`core.data.ground_truth`, a
file that is not part of either release): every actor's class, and per sentence the attribute
type that singles its referent out (`Sentence.key`: the first type in `grammar.describe`'s
search order, the planned type first, whose attribute, alone or paired with one more, matches
only the referent). J-HMDB's classes are null: its layout masks the referent only, so the
same-class actors in its pixels have no masks to score a language-blind guess with.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from core.config import Params
from core.data.a2d import GROUND_TRUTH as A2D_GROUND_TRUTH
from core.data.a2d import VideosetRow, video_path
from core.data.a2d_write import write_annotations, write_frame_h5, write_missed_videos, write_videoset
from core.data.ground_truth import write_ground_truth
from core.data.jhmdb import ACTOR_ID, write_puppet_mask, write_video_frames
from core.data.jhmdb import GROUND_TRUTH as JHMDB_GROUND_TRUTH
from core.data.jhmdb import write_annotations as write_jhmdb_annotations
from core.data.synthetic.grammar import ATTRIBUTE_TYPES, CLASSES, COLOURS, MOTIONS, TYPE_KEYS
from core.data.synthetic.plan import plan_dataset
from core.data.synthetic.render import render_scene
from core.data.synthetic.scene import DatasetPlan, Scene, Sentence
from core.data.video import write_mp4
from core.io import staged_dir, write_json
from core.sections import SyntheticParams

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
        vid=scene.video_id,
        label=_label(scene),
        start_time=start,
        end_time=round(start + scene.frames / 24, 3),
        height=scene.height,
        width=scene.width,
        total_frames=scene.frames,
        annotated_frames=len(scene.annotated),
        subset=0 if scene.split in ("train", "missed") else 1,
    )


def write_a2d(root: Path, plan: DatasetPlan) -> None:
    """The A2D Sentences layout under `root` (the missed video in full, and listed as missed)."""
    scenes = [*plan.train, plan.missed, *plan.test]
    rows = [_write_a2d_video(root, s) for s in scenes]
    write_annotations(root, [(s.video_id, str(x.referent), x.text) for s in scenes for x in s.sentences])
    write_missed_videos(root, [plan.missed.video_id])
    write_ground_truth(
        root / A2D_GROUND_TRUTH,
        {s.video_id: {a.instance_id: a.cls for a in s.actors} for s in scenes},
        [(s.video_id, x.referent, x.text, x.key) for s in scenes for x in s.sentences],
    )
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
    write_ground_truth(
        root / JHMDB_GROUND_TRUTH,
        {s.video_id: None for s in plan.jhmdb},
        [(s.video_id, ACTOR_ID, x.text, x.key) for s in plan.jhmdb for x in s.sentences],
    )


# --------------------------------------------------------------------------------------
# summary and generation
# --------------------------------------------------------------------------------------


def _sentences(scenes: Sequence[Scene]) -> list[Sentence]:
    return [x for s in scenes for x in s.sentences]


def _fraction(sentences: Sequence[Sentence]) -> float:
    return round(sum(s.same_class for s in sentences) / len(sentences), 4) if sentences else 0.0


def _mean_actors(scenes: Sequence[Scene]) -> float:
    return round(float(np.mean([len(s.actors) for s in scenes])), 4)


def summarize(plan: DatasetPlan, syn: SyntheticParams) -> dict:
    """Counts of the usable dataset (the missed video excluded), deterministic."""
    splits = {"train": plan.train, "test": plan.test}
    usable = [*plan.train, *plan.test]
    sents = _sentences(usable)
    named = Counter(t for x in sents for t in ATTRIBUTE_TYPES if any(k in x.named for k in TYPE_KEYS[t]))
    j_sents = _sentences(plan.jhmdb)
    return {
        "source": "synthetic",
        "generated": True,
        "seed": syn.seed,
        "height": syn.height,
        "width": syn.width,
        "frames_per_video": syn.frames_per_video,
        "videos": {k: len(v) for k, v in splits.items()},
        "sentences": {k: len(_sentences(v)) for k, v in splits.items()},
        "annotated_frames": {k: sum(len(s.annotated) for s in v) for k, v in splits.items()},
        "mean_actors_per_video": _mean_actors(usable),
        "distractor_fraction": syn.distractor_fraction,
        "same_class_fraction": _fraction(sents),
        "same_class_fraction_by_split": {k: _fraction(_sentences(v)) for k, v in splits.items()},
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
            "mean_actors_per_video": _mean_actors(plan.jhmdb),
            "same_class_fraction": _fraction(j_sents),
            "actions": dict(sorted(Counter(s.action for s in plan.jhmdb).items())),
        },
    }


def generate(params: Params) -> dict:
    """Write the synthetic twin of data.dataset at its root(s) (core.data.registry: A2D with its
    J-HMDB twin, Ref-YouTube-VOS or MeViS; atomically, as whole folders) and
    outputs/raw/synthetic_summary.json; return the summary. A no-op for data.source=real."""
    if params.data.source != "synthetic":
        # the roots then point at the user's real dataset: never touch it. Still leave
        # outputs/raw/ with a summary, so the pipeline's 'generate' stage is a clean no-op.
        summary = {"source": params.data.source, "generated": False}
        write_json(params.outputs / "raw" / "synthetic_summary.json", summary)
        return summary
    spec = params.dataset_spec
    summary = spec.write_twin(params, plan_dataset(params), spec.root_of(params))
    write_json(params.outputs / "raw" / "synthetic_summary.json", summary)
    return summary


def write_a2d_twin(params: Params, plan: DatasetPlan, root: Path) -> dict:
    """The A2D layout at `root` and the J-HMDB one at params.raw_root("jhmdb"); the summary."""
    jhmdb_root = params.raw_root("jhmdb")
    assert jhmdb_root is not None  # always set for the synthetic source
    # Both folders are written before either is published, so a failure keeps the old pair.
    # The contexts exit innermost first: a2d is published, then jhmdb.
    with staged_dir(jhmdb_root) as jhmdb_tmp, staged_dir(root) as a2d_tmp:
        write_a2d(a2d_tmp, plan)
        write_jhmdb(jhmdb_tmp, plan)
    return summarize(plan, params.data.synthetic)
