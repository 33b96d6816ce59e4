"""The synthetic A2D / J-HMDB generator: determinism, layout, unambiguous sentences,
pixels vs masks after H.264, reader round trip, and dataset-level atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from scipy import ndimage

from core.config import Params, load_params
from core.data import synthetic
from core.data.a2d import ANNOTATIONS, INSTANCES, MISSED, VIDEOSET, h5_path, video_path
from core.data.synthetic import render, write
from core.data.synthetic.__main__ import main
from core.data.synthetic.grammar import word_fields
from core.data.video import count_frames, read_frames

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"
SMALL = [
    "data.synthetic.train_videos=5",
    "data.synthetic.test_videos=3",
    "data.synthetic.jhmdb_videos=4",
    "data.synthetic.frames_per_video=6",
    "data.synthetic.annotated_per_video=2",
    "data.synthetic.height=48",
    "data.synthetic.width=64",
]


def small_params(outputs: Path, *extra: str) -> Params:
    return load_params(PARAMS_YAML, [*SMALL, f"paths.outputs={outputs}", *extra])


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Params, dict]:
    """One small generation shared by the read-only tests."""
    params = small_params(tmp_path_factory.mktemp("syn"))
    return params, synthetic.generate(params)


def _a2d_contents(root: Path) -> dict[str, object]:
    """Text files as bytes, h5 files as their decoded arrays (mp4s are checked elsewhere)."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.suffix in (".csv", ".txt", ".json"):
            out[rel] = p.read_bytes()
        elif p.suffix == ".h5":
            with h5py.File(p, "r") as f:
                out[rel] = (f["instance"][()].tolist(), f["reMask"][()].tobytes(), f["reMask"].shape)
    return out


def _jhmdb_contents(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.suffix in (".txt", ".png", ".json"):
            out[rel] = p.read_bytes()
        elif p.suffix == ".mat":  # savemat stamps the creation time in the header: compare arrays
            out[rel] = scipy.io.loadmat(str(p))["part_mask"].tobytes()
    return out


# ---------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------


def test_same_seed_same_files_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = (
        small_params(tmp_path / name, *extra)
        for name, extra in (("a", ()), ("b", ()), ("c", ("data.synthetic.seed=1",)))
    )
    for p in (a, b, c):
        synthetic.generate(p)
    first, second = _a2d_contents(a.raw_root("a2d")), _a2d_contents(b.raw_root("a2d"))
    assert first.keys() == second.keys() and len(first) > 10
    assert first == second
    assert _jhmdb_contents(a.raw_root("jhmdb")) == _jhmdb_contents(b.raw_root("jhmdb"))
    assert (a.outputs / "raw" / "synthetic_summary.json").read_bytes() == (
        b.outputs / "raw" / "synthetic_summary.json"
    ).read_bytes()
    other = _a2d_contents(c.raw_root("a2d"))
    assert other[str(ANNOTATIONS)] != first[str(ANNOTATIONS)]
    assert other[str(VIDEOSET)] != first[str(VIDEOSET)]


def test_rerun_in_place_regenerates_identically(tmp_path: Path) -> None:
    params = small_params(tmp_path)
    synthetic.generate(params)
    before = _a2d_contents(params.raw_root("a2d"))
    synthetic.generate(params)
    assert _a2d_contents(params.raw_root("a2d")) == before
    assert not [p.name for p in params.raw_root("a2d").parent.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------


def test_a2d_layout(generated: tuple[Params, dict]) -> None:
    params, summary = generated
    root, syn = params.raw_root("a2d"), params.data.synthetic
    for rel in (VIDEOSET, ANNOTATIONS, MISSED):
        assert (root / rel).is_file(), rel
    rows = [line.split(",") for line in (root / VIDEOSET).read_text().splitlines()]
    assert len(rows) == syn.train_videos + syn.test_videos + 1  # + the missed video
    assert sorted(int(r[8]) for r in rows).count(1) == syn.test_videos
    for vid, _label, start, end, h, w, total, annotated, _subset in rows:
        assert len(vid) == 11 and float(end) > float(start)
        assert (int(h), int(w)) == (syn.height, syn.width)
        assert count_frames(video_path(root, vid)) == int(total) == syn.frames_per_video
        h5s = sorted((root / INSTANCES / vid).glob("*.h5"))
        assert len(h5s) == int(annotated) == syn.annotated_per_video
        for p in h5s:
            assert 1 <= int(p.stem) <= int(total)  # 1-indexed frame numbers
            with h5py.File(p, "r") as f:
                n = f["instance"].size
                expect = (int(w), int(h)) if n == 1 else (n, int(w), int(h))  # stored transposed
                assert f["reMask"].shape == expect
    missed = (root / MISSED).read_text().split()
    assert missed == summary["missed_videos"] and missed[0] in [r[0] for r in rows]
    assert video_path(root, missed[0]).is_file()


def test_jhmdb_layout(generated: tuple[Params, dict]) -> None:
    params, summary = generated
    root, syn = params.raw_root("jhmdb"), params.data.synthetic
    plan = synthetic.plan_dataset(params)
    for scene in plan.jhmdb:
        pngs = sorted((root / "Rename_Images" / scene.action / scene.video_id).glob("*.png"))
        assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(1, syn.frames_per_video + 1)]
        pm = scipy.io.loadmat(str(root / "puppet_mask" / scene.action / scene.video_id / "puppet_mask.mat"))[
            "part_mask"
        ]
        assert pm.shape == (syn.height, syn.width, scene.masked_frames)
        assert all(pm[:, :, t].any() for t in range(pm.shape[2]))
    assert summary["jhmdb"]["videos_with_unmasked_tail"] >= 1
    assert len((root / "jhmdb_annotation.txt").read_text().splitlines()) == 1 + syn.jhmdb_videos


# ---------------------------------------------------------------------------------------
# sentences
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction, extra", [(0.85, ()), (0.3, ()), (0.6, ("data.synthetic.actors_max=2",))])
def test_sentences_name_exactly_one_actor(tmp_path: Path, fraction: float, extra: tuple[str, ...]) -> None:
    params = small_params(
        tmp_path,
        "data.synthetic.train_videos=40",
        "data.synthetic.test_videos=12",
        "data.synthetic.jhmdb_videos=10",
        f"data.synthetic.distractor_fraction={fraction}",
        *extra,
    )
    plan = synthetic.plan_dataset(params)
    scenes = [*plan.train, *plan.test, plan.missed, *plan.jhmdb]
    for scene in scenes:
        assert [a.instance_id for a in scene.actors] == list(range(1, len(scene.actors) + 1))
        referents = [s.referent for s in scene.sentences]
        assert len(set(referents)) == len(referents)  # different actors: the sentence matters
        for s in scene.sentences:
            named = synthetic.parse_sentence(s.text)  # re-derived from the words alone
            assert named == s.named, s.text
            assert "class" in named and len(named) >= 2, s.text
            assert synthetic.matching_actors(scene.actors, named) == [s.referent], (scene.video_id, s.text)
            ref = scene.actor(s.referent)
            assert s.same_class == (sum(a.cls == ref.cls for a in scene.actors) > 1)
    a2d = [s for scene in [*plan.train, *plan.test] for s in scene.sentences]
    assert len(a2d) >= 50
    share = sum(s.same_class for s in a2d) / len(a2d)
    assert abs(share - fraction) <= 0.15
    assert synthetic.summarize(plan, params.data.synthetic)["same_class_fraction"] == pytest.approx(share, abs=1e-3)


def test_positions_and_motions_hold_over_the_video(generated: tuple[Params, dict]) -> None:
    params, _ = generated
    syn = params.data.synthetic
    plan = synthetic.plan_dataset(params)
    for scene in [*plan.train, *plan.test, *plan.jhmdb]:
        for a in scene.actors:
            xs, ys = zip(*(a.centre(t) for t in range(scene.frames)))
            assert (max(xs) < syn.width / 2) == (a.hpos == "left") and (min(xs) > syn.width / 2) == (a.hpos == "right")
            assert (max(ys) < syn.height / 2) == (a.vpos == "top") and (min(ys) > syn.height / 2) == (
                a.vpos == "bottom"
            )
            dx, dy = xs[-1] - xs[0], ys[-1] - ys[0]
            moved = {"left": dx < -1, "right": dx > 1, "up": dy < -1, "down": dy > 1, "still": dx == dy == 0}
            assert moved[a.motion], (a, dx, dy)


def test_parse_sentence_examples() -> None:
    parse = synthetic.parse_sentence
    assert parse("the red ball on the left") == {"class": "ball", "colour": "red", "hpos": "left"}
    assert parse("a small circle moving up") == {"class": "ball", "size": "small", "motion": "up"}
    assert parse("the box that is not moving at the top") == {"class": "box", "motion": "still", "vpos": "top"}
    assert parse("wedge heading right in the bottom left corner") == {
        "class": "triangle",
        "motion": "right",
        "vpos": "bottom",
        "hpos": "left",
    }


def test_word_fields_tag_the_words_that_carry_each_value() -> None:
    words = "the small red disc that is not moving at the top".split()
    assert word_fields(words) == [
        None,
        ("size", "small"),
        ("colour", "red"),
        ("class", "ball"),
        None,
        None,
        None,
        ("motion", "still"),
        None,
        None,
        ("vpos", "top"),
    ]
    # 'left' after a motion verb is a motion, elsewhere a position
    assert word_fields(["box", "heading", "left", "on", "the", "right"]) == [
        ("class", "box"),
        None,
        ("motion", "left"),
        None,
        None,
        ("hpos", "right"),
    ]


# ---------------------------------------------------------------------------------------
# pixels and masks
# ---------------------------------------------------------------------------------------


def test_masks_match_pixels_after_h264(generated: tuple[Params, dict]) -> None:
    params, _ = generated
    root = params.raw_root("a2d")
    plan = synthetic.plan_dataset(params)
    checked = 0
    for scene in [*plan.train, *plan.test]:
        frames = read_frames(video_path(root, scene.video_id), scene.annotated)
        _, rendered = synthetic.render_scene(scene)
        for frame, t in zip(frames, scene.annotated):
            with h5py.File(h5_path(root, scene.video_id, t + 1), "r") as f:
                ids = [int(i) for i in np.ravel(f["instance"][()])]
                stored = f["reMask"][()]
            masks = (stored[None] if stored.ndim == 2 else stored).transpose(0, 2, 1) > 0
            assert ids == [a.instance_id for a in scene.actors]  # every actor stays visible
            assert all(m.any() for m in masks)
            assert np.array_equal(masks, rendered[t])
            for s in scene.sentences:
                inner = ndimage.binary_erosion(masks[ids.index(s.referent)])  # edges bleed in yuv420p
                if inner.sum() < 4:
                    continue
                nominal = np.array(synthetic.COLOURS[scene.actor(s.referent).colour], float)
                mean = frame[inner].reshape(-1, 3).mean(0)
                assert np.abs(mean - nominal).max() < 30, (scene.video_id, s.text, mean, nominal)
                checked += 1
    assert checked >= 10


def test_referents_mostly_visible(generated: tuple[Params, dict]) -> None:
    params, _ = generated
    plan = synthetic.plan_dataset(params)
    for scene in [*plan.train, *plan.test, *plan.jhmdb]:
        _, visible = synthetic.render_scene(scene)
        for s in scene.sentences:
            k = s.referent - 1
            for t in range(scene.frames):
                full = render.actor_shapes([scene.actors[k]], scene.height, scene.width, t)[0]
                assert visible[t, k].sum() >= synthetic.MIN_VISIBLE_REFERENT * full.sum() > 0


@pytest.mark.parametrize("cls", synthetic.CLASSES)
def test_half_extent_is_the_drawn_extent(cls: str) -> None:
    """Planning keeps actors in frame with half_extent; it reads the table shape_mask draws from."""
    step, r = 0.01, 1.0
    axis = np.arange(-200, 201) * step  # has the centre line x = 0, through the triangle's apex
    xx, yy = np.meshgrid(axis, axis)
    mask = synthetic.shape_mask(cls, xx.astype(np.float32), yy.astype(np.float32), 0.0, 0.0, r)
    ex, ey = synthetic.half_extent(cls, r)
    assert np.abs(xx[mask]).max() == pytest.approx(ex, abs=step)
    assert np.abs(yy[mask]).max() == pytest.approx(ey, abs=step)


# ---------------------------------------------------------------------------------------
# readers round trip
# ---------------------------------------------------------------------------------------


def test_round_trip_through_the_readers(generated: tuple[Params, dict]) -> None:
    a2d = pytest.importorskip("core.data.a2d")
    jhmdb = pytest.importorskip("core.data.jhmdb")
    from core.data.types import SkipLedger

    params, summary = generated
    ledger = SkipLedger()
    videos = list(a2d.read_a2d(params.raw_root("a2d"), ledger))
    for split in ("train", "test"):
        mine = [v for v in videos if v.split == split]
        assert len(mine) == summary["videos"][split]
        assert sum(len(v.expressions) for v in mine) == summary["sentences"][split]
        assert sum(len(v.frames) for v in mine) == summary["annotated_frames"][split]
    assert ledger.counts["missed_video"] == 1
    assert summary["missed_videos"][0] not in {v.video_id for v in videos}
    assert set(ledger.counts) == {"missed_video"}

    jledger = SkipLedger()
    jvideos = list(jhmdb.read_jhmdb(params.raw_root("jhmdb"), jledger))
    assert len(jvideos) == summary["jhmdb"]["videos"]
    assert sum(len(v.expressions) for v in jvideos) == summary["jhmdb"]["sentences"]
    assert jledger.counts["jhmdb_unmasked_trailing_frames"] == summary["jhmdb"]["videos_with_unmasked_tail"]

    # the ground truth sidecars (not in the real releases): every actor's class, and per
    # sentence the planned disambiguating type; J-HMDB masks the referent only: classes unknown
    plan = synthetic.plan_dataset(params)
    scenes = {s.video_id: s for s in (*plan.train, *plan.test, *plan.jhmdb)}
    for v in videos:
        scene = scenes[v.video_id]
        assert v.classes == {a.instance_id: a.cls for a in scene.actors}
        assert [(e.referent, e.attribute) for e in v.expressions] == [(x.referent, x.key) for x in scene.sentences]
    for v in jvideos:
        assert v.classes is None
        assert [e.attribute for e in v.expressions] == [x.key for x in scenes[v.video_id].sentences]
    assert {e.attribute for v in videos for e in v.expressions} <= set(synthetic.ATTRIBUTE_TYPES)


# ---------------------------------------------------------------------------------------
# atomicity, entry point
# ---------------------------------------------------------------------------------------


def _failing_after(n: int, real):
    calls = {"n": 0}

    def writer(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    return writer


def test_failed_generation_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = small_params(tmp_path)
    (tmp_path / "raw" / ".a2d.tmp-killed").mkdir(parents=True)  # left by an earlier kill
    monkeypatch.setattr(write, "write_frame_h5", _failing_after(5, write.write_frame_h5))
    with pytest.raises(RuntimeError, match="simulated crash"):
        synthetic.generate(params)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == []


def test_failed_regeneration_keeps_previous_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = small_params(tmp_path)
    summary = synthetic.generate(params)
    before_a2d, before_j = _a2d_contents(params.raw_root("a2d")), _jhmdb_contents(params.raw_root("jhmdb"))
    monkeypatch.setattr(write, "write_puppet_mask", _failing_after(2, write.write_puppet_mask))
    with pytest.raises(RuntimeError, match="simulated crash"):
        synthetic.generate(params.replace(**{"data.synthetic.seed": 5}))
    assert _a2d_contents(params.raw_root("a2d")) == before_a2d  # a2d was complete too, but not swapped in alone
    assert _jhmdb_contents(params.raw_root("jhmdb")) == before_j
    assert json.loads((tmp_path / "raw" / "synthetic_summary.json").read_text()) == summary
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["a2d", "jhmdb", "synthetic_summary.json"]


def test_real_source_is_a_no_op(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    params = small_params(tmp_path / "out", "data.source=real", f"data.a2d_root={real}")
    assert synthetic.generate(params) == {"source": "real", "generated": False}
    assert list(real.iterdir()) == []  # the user's dataset root is never written
    assert (tmp_path / "out" / "raw" / "synthetic_summary.json").is_file()  # the stage's output exists


def test_main_prints_and_writes_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--params", str(PARAMS_YAML), *sum((["--set", s] for s in SMALL), []), "--set", f"paths.outputs={tmp_path}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "raw" / "synthetic_summary.json").read_text())
    assert f"{summary['videos']['train']} train / {summary['videos']['test']} test videos" in out
    assert {
        "videos",
        "sentences",
        "annotated_frames",
        "mean_actors_per_video",
        "same_class_fraction",
        "attribute_types",
        "jhmdb",
        "seed",
        "missed_videos",
    } <= set(summary)
