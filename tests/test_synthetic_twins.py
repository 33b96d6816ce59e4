"""The synthetic scenes in the Ref-YouTube-VOS and MeViS layouts (core.data.synthetic.twins):
read back by the real readers, masks equal to the rendered ones, group sentences ("the two red
balls") true of exactly their referents, clean ledgers, valid splits without masks, atomic
publishing, and the A2D plan untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import Params
from core.data import mevis, ytvos
from core.data.rle import decode_rle
from core.data.synthetic import grammar, plan, render, twins
from core.data.synthetic.grammar import COLOURS, GroupSentence
from core.data.synthetic.scene import DatasetPlan, Scene
from core.data.types import SkipLedger

from .conftest import tiny_params

VALID_VIDEOS = 2


class Twins:
    def __init__(self, params: Params, root: Path) -> None:
        self.params = params
        self.plan = plan.plan_dataset(params)
        self.valid = plan.plan_valid(params, VALID_VIDEOS)
        self.seed = params.data.synthetic.seed
        self.groups = twins.mevis_groups(self.plan, self.valid, self.seed)
        self.ytvos_root, self.mevis_root = root / "ytvos", root / "mevis"
        self.ytvos_summary = twins.generate_ytvos(self.ytvos_root, self.plan, self.valid)
        self.mevis_summary = twins.generate_mevis(self.mevis_root, self.plan, self.valid, seed=self.seed)
        self.scenes = {s.video_id: s for s in (*self.plan.train, *self.plan.test, *self.valid)}
        self._rendered: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def rendered(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        if video_id not in self._rendered:
            self._rendered[video_id] = render.render_scene(self.scenes[video_id])
        return self._rendered[video_id]


@pytest.fixture(scope="module")
def tw(tmp_path_factory: pytest.TempPathFactory) -> Twins:
    root = tmp_path_factory.mktemp("twins")
    return Twins(tiny_params(root / "outputs"), root)


def _mask(scene: Scene, masks: np.ndarray, t: int, instance_id: int) -> np.ndarray:
    k = [a.instance_id for a in scene.actors].index(instance_id)
    return masks[t, k]


# ---------------------------------------------------------------------------------------
# Ref-YouTube-VOS
# ---------------------------------------------------------------------------------------


def test_ytvos_train_round_trip(tw: Twins) -> None:
    ledger = SkipLedger()
    n_annotated = tw.params.data.synthetic.annotated_per_video
    videos = list(ytvos.read_ytvos(tw.ytvos_root, ledger, frames_per_video=n_annotated))
    assert not ledger.counts  # a clean twin: no quirk, no problem
    expected = [*tw.plan.train, *tw.plan.test]  # A2D test scenes are train here: offline_split holds out
    assert [v.video_id for v in videos] == [s.video_id for s in expected]
    assert tw.ytvos_summary["videos"] == {"train": len(expected), "valid": VALID_VIDEOS}
    for v in videos:
        scene = tw.scenes[v.video_id]
        frames, masks = tw.rendered(v.video_id)
        assert v.split == "train" and (v.height, v.width) == (scene.height, scene.width)
        assert v.classes == {a.instance_id: a.cls for a in scene.actors}
        got = [(e.text, e.referent, e.attribute) for e in v.expressions]
        assert got == [(x.text, x.referent, x.key) for x in scene.sentences]  # the sidecar's attribute types
        assert [f.index for f in v.frames] == list(scene.annotated)
        for f in v.frames:
            visible = [a.instance_id for a in scene.actors if _mask(scene, masks, f.index, a.instance_id).any()]
            assert list(f.instance_ids) == visible
            for i, m in zip(f.instance_ids, f.masks):
                np.testing.assert_array_equal(m, _mask(scene, masks, f.index, i))
        # JPEG frames named every 5th frame number, decoded close to the rendered pixels
        jpegs = sorted(v.source.glob("*.jpg"))
        assert [p.stem for p in jpegs] == [f"{5 * t:05d}" for t in range(scene.frames)]
        decoded = np.asarray(Image.open(jpegs[scene.annotated[0]]).convert("RGB"), np.float32)
        assert np.abs(decoded - frames[scene.annotated[0]]).mean() < 4.0
    meta = json.loads(ytvos.meta_path(tw.ytvos_root).read_text())["videos"]
    for vid, entry in meta.items():
        scene = tw.scenes[vid]
        _, masks = tw.rendered(vid)
        for a in scene.actors:
            obj = entry["objects"][str(a.instance_id)]
            shown = [f"{5 * t:05d}" for t in scene.annotated if _mask(scene, masks, t, a.instance_id).any()]
            assert obj == {"category": a.cls, "frames": shown}
    held_out = ytvos.offline_split([v.video_id for v in videos], 0.25, seed=0)
    assert 0 < len(held_out) < len(videos)


def test_ytvos_valid_has_frames_and_expressions_only(tw: Twins) -> None:
    ledger = SkipLedger()
    videos = list(ytvos.read_ytvos_valid(tw.ytvos_root, ledger))
    assert not ledger.counts
    assert [v.video_id for v in videos] == [s.video_id for s in tw.valid]
    listed = json.loads(ytvos.meta_expressions_path(tw.ytvos_root, "valid").read_text())["videos"]
    for v in videos:
        scene = tw.scenes[v.video_id]
        assert [q.text for q in v.expressions] == [x.text for x in scene.sentences]
        assert all("obj_id" not in e for e in listed[v.video_id]["expressions"].values())  # no referent
        assert v.frame_indices == tuple(range(scene.frames))
    assert not (tw.ytvos_root / "valid" / ytvos.ANNOTATION_DIR).exists()
    assert not ytvos.meta_path(tw.ytvos_root, "valid").exists()
    train_ids = {s.video_id for s in (*tw.plan.train, *tw.plan.test, tw.plan.missed)}
    assert not train_ids & {s.video_id for s in tw.valid}


# ---------------------------------------------------------------------------------------
# MeViS
# ---------------------------------------------------------------------------------------


def _observed(scene: Scene, frames: np.ndarray, masks: np.ndarray) -> dict[int, dict[str, str]]:
    """Each actor's attributes as the rendered video shows them: colour from its pixels,
    position and motion from its drawn shape's centroid over the frames (class and size as
    planned: the shape table and radius decide them)."""
    out = {}
    h, w = scene.height, scene.width
    palette = np.array(list(COLOURS.values()), np.float32)
    for k, a in enumerate(scene.actors):
        pixels = frames[masks[:, k]].astype(np.float32)
        colour = list(COLOURS)[int(np.argmin(((palette - pixels.mean(0)) ** 2).sum(1)))]
        cs = []
        for t in range(scene.frames):
            yy, xx = np.nonzero(render.actor_shapes([a], h, w, t)[0])
            cs.append((xx.mean() + 0.5, yy.mean() + 0.5))
        xs, ys = np.array(cs).T
        hpos = "left" if xs.max() < w / 2 else "right" if xs.min() > w / 2 else "?"
        vpos = "top" if ys.max() < h / 2 else "bottom" if ys.min() > h / 2 else "?"
        dx, dy = xs[-1] - xs[0], ys[-1] - ys[0]
        if max(abs(dx), abs(dy)) < 0.5:
            motion = "still"
        elif abs(dx) > abs(dy):
            motion = "left" if dx < 0 else "right"
        else:
            motion = "up" if dy < 0 else "down"
        out[a.instance_id] = {
            "class": a.cls,
            "colour": colour,
            "size": a.size,
            "hpos": hpos,
            "vpos": vpos,
            "motion": motion,
        }
    return out


def _true_of(named: dict[str, str], observed: dict[int, dict[str, str]]) -> list[int]:
    return sorted(i for i, attrs in observed.items() if all(attrs[k] == v for k, v in named.items()))


def test_mevis_masked_splits_round_trip(tw: Twins) -> None:
    objects = twins.mevis_objects(tw.plan, tw.valid, tw.groups)
    anno = {(o.split, o.video_id, o.instance_id): aid for aid, o in objects.items()}
    n_groups = 0
    for split, scenes in (("train", tw.plan.train), ("valid_u", tw.plan.test)):
        ledger = SkipLedger()
        unions: dict[str, dict[int, tuple[int, ...]]] = {}
        frames_per_video = tw.params.data.synthetic.frames_per_video
        videos = list(mevis.read_mevis(tw.mevis_root, ledger, split, frames_per_video, unions))
        assert not ledger.counts  # a clean twin
        assert [v.video_id for v in videos] == sorted(s.video_id for s in scenes)  # write_json sorts keys
        for v in videos:
            scene = tw.scenes[v.video_id]
            frames, masks = tw.rendered(v.video_id)
            groups = tw.groups[split].get(v.video_id, ())
            n_groups += len(groups)
            assert v.split == mevis.SPLITS[split] and v.classes is None
            # expressions: the singles (their referent's anno_id), then the groups (a virtual union)
            singles = [(x.text, anno[split, v.video_id, x.referent]) for x in scene.sentences]
            group_ids = [tuple(anno[split, v.video_id, i] for i in g.referents) for g in groups]
            multi = [(g.text, mevis.virtual_id(ids)) for g, ids in zip(groups, group_ids)]
            assert [(e.text, e.referent) for e in v.expressions] == singles + multi
            assert unions[v.video_id] == {mevis.virtual_id(ids): ids for ids in group_ids}
            assert [f.index for f in v.frames] == list(range(scene.frames))  # every frame is annotated
            for f in v.frames:
                for i, m in zip(f.instance_ids, f.masks):
                    if mevis.is_virtual(i):
                        members = [objects[a].instance_id for a in unions[v.video_id][i]]
                        union = np.logical_or.reduce([_mask(scene, masks, f.index, j) for j in members])
                        np.testing.assert_array_equal(m, union)
                    else:
                        assert objects[i].video_id == v.video_id
                        np.testing.assert_array_equal(m, _mask(scene, masks, f.index, objects[i].instance_id))
            # each group sentence is true of exactly its referents, in the rendered pixels too
            observed = _observed(scene, frames, masks)
            assert observed == {a.instance_id: a.attributes() for a in scene.actors}  # the plan is what is drawn
            for g in groups:
                named, count = grammar.parse_group_sentence(g.text)
                assert grammar.matching_actors(scene.actors, named) == list(g.referents), g.text
                assert _true_of(named, observed) == list(g.referents), (g.text, observed)
                assert count == len(g.referents) >= 2 and len({scene.actor(i).cls for i in g.referents}) == 1
        # mask_dict: every referred object, one RLE (or null: fully hidden) per frame, exact
        doc = json.loads(mevis.mask_dict_path(tw.mevis_root, split).read_text())
        held = {int(k) for k in doc}
        assert held == {aid for (sp, _, _), aid in anno.items() if sp == split}
        for key, entries in doc.items():
            o = objects[int(key)]
            scene = tw.scenes[o.video_id]
            _, masks = tw.rendered(o.video_id)
            assert len(entries) == scene.frames
            for t, rle in enumerate(entries):
                want = _mask(scene, masks, t, o.instance_id)
                got = np.zeros_like(want) if rle is None else decode_rle(rle)
                np.testing.assert_array_equal(got, want)
    assert n_groups > 0
    summary = tw.mevis_summary
    assert summary["group_expressions"] == {s: len(tw.groups[s]) for s in twins.MEVIS_SPLITS}
    assert summary["videos"] == {"train": len(tw.plan.train), "valid_u": len(tw.plan.test), "valid": VALID_VIDEOS}


def test_mevis_valid_has_no_masks(tw: Twins) -> None:
    ledger = SkipLedger()
    videos = list(mevis.read_mevis_valid(tw.mevis_root, ledger))
    assert not ledger.counts
    assert [v.video_id for v in videos] == sorted(s.video_id for s in tw.valid)
    for v in videos:
        groups = tw.groups["valid"].get(v.video_id, ())
        assert [q.text for q in v.expressions] == [x.text for x in tw.scenes[v.video_id].sentences] + [
            g.text for g in groups
        ]
    assert not mevis.mask_dict_path(tw.mevis_root, "valid").exists()
    meta = json.loads(mevis.meta_path(tw.mevis_root, "valid").read_text())["videos"]
    assert all(set(e) == {"exp"} for v in meta.values() for e in v["expressions"].values())
    with pytest.raises(Exception, match="no masks"):
        next(mevis.read_mevis(tw.mevis_root, SkipLedger(), "valid"))


# ---------------------------------------------------------------------------------------
# group sentences
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, named, count",
    [
        ("the two red balls", {"class": "ball", "colour": "red"}, 2),
        ("both small boxes moving left", {"class": "box", "size": "small", "motion": "left"}, 2),
        ("all three rods that are not moving", {"class": "bar", "motion": "still"}, 3),
        ("the two discs that are green", {"class": "ball", "colour": "green"}, 2),
        (
            "the two big wedges in the top left",
            {"class": "triangle", "size": "large", "hpos": "left", "vpos": "top"},
            2,
        ),
    ],
)
def test_parse_group_sentence_examples(text: str, named: dict[str, str], count: int) -> None:
    assert grammar.parse_group_sentence(text) == (named, count)


def _big_params(tmp_path: Path) -> Params:
    return tiny_params(tmp_path, **{"data.synthetic.train_videos": 60, "data.synthetic.test_videos": 20})


def test_group_sentences_are_a_true_minority(tmp_path: Path) -> None:
    params = _big_params(tmp_path)
    dataset = plan.plan_dataset(params)
    valid = plan.plan_valid(params, 6)
    groups = twins.mevis_groups(dataset, valid, seed=0)
    strict = 0
    for split, scenes in twins.mevis_splits(dataset, valid).items():
        by_id = {s.video_id: s for s in scenes}
        singles = sum(len(s.sentences) for s in scenes)
        n = sum(len(g) for g in groups[split].values())
        if split != "valid":
            assert 0.1 <= n / (n + singles) <= 0.3, (split, n, singles)
        for vid, gs in groups[split].items():
            scene = by_id[vid]
            assert len(gs) == 1
            for g in gs:
                assert isinstance(g, GroupSentence) and g.named == grammar.parse_group_sentence(g.text)[0]
                assert grammar.matching_actors(scene.actors, g.named) == list(g.referents)
                same_class = [a for a in scene.actors if a.cls == g.named["class"]]
                strict += len(same_class) > len(g.referents)
                assert (g.key is None) == (len(same_class) == len(g.referents))
    assert strict >= 3  # some groups need an attribute to tell them from same-class distractors
    assert twins.mevis_groups(dataset, valid, seed=0) == groups  # deterministic
    assert twins.mevis_groups(dataset, valid, seed=0, fraction=0.0) == {s: {} for s in twins.MEVIS_SPLITS}


def test_twin_planning_leaves_the_a2d_plan_unchanged(tmp_path: Path) -> None:
    params = tiny_params(tmp_path)
    before = plan.plan_dataset(params)
    valid = plan.plan_valid(params, 3)
    twins.mevis_groups(before, valid, seed=0)
    after = plan.plan_dataset(params)
    assert isinstance(after, DatasetPlan) and after == before
    ids = plan._video_ids(params.data.synthetic.seed, len(before.train) + len(before.test) + 1 + 3)
    assert [s.video_id for s in valid] == ids[-3:]  # the id sequence continues: no clash
    assert [s.video_id for s in (*before.train, *before.test, before.missed)] == ids[:-3]
    assert {s.split for s in valid} == {"valid"}


# ---------------------------------------------------------------------------------------
# publishing
# ---------------------------------------------------------------------------------------


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_regeneration_is_identical_and_a_failure_keeps_the_old_folder(
    tw: Twins, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = DatasetPlan(tw.plan.train[:2], tw.plan.test[:1], tw.plan.missed, ())
    root = tmp_path / "mevis"
    twins.generate_mevis(root, small, tw.valid[:1], seed=tw.seed)
    first = _files(root)
    twins.generate_mevis(root, small, tw.valid[:1], seed=tw.seed)
    assert _files(root) == first and len(first) > 10

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(twins.mevis_write, "write_split", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        twins.generate_mevis(root, small, tw.valid[:1], seed=tw.seed)
    monkeypatch.setattr(twins.ytvos_write, "write_meta", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        twins.generate_ytvos(tmp_path / "ytvos", small)
    assert _files(root) == first
    assert not (tmp_path / "ytvos").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mevis"]  # no temp folder left
