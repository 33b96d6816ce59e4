"""Extraction stage: synthetic -> processed store round trip, bad inputs, atomicity, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.data import a2d, a2d_write
from core.data import chunks as chunks_mod
from core.data.a2d import read_a2d
from core.data.extract import extract, val_videos
from core.data.store import open_split
from core.data.synthetic import generate, plan_dataset
from core.data.types import SkipLedger
from core.data.vocab import Vocab
from core.errors import DataError

from .conftest import tiny_params


def test_store_matches_the_raw_dataset(tiny_store):
    """Every stored mask equals the raw h5 mask (resized), and the original-size copy is exact."""
    p = tiny_store
    summary = json.loads((p.processed / "summary.json").read_text())
    raw = {v.video_id: v for v in read_a2d(p.raw_root("a2d"), SkipLedger())}
    n_checked = 0
    for split in ("train", "val", "test"):
        st = open_split(p.processed, split)
        assert summary["splits"][split]["videos"] == len(st.videos)
        for row, frame in enumerate(st.frames):
            video = raw[st.videos[frame["video"]]["id"]]
            truth = {f.index: f for f in video.frames}[frame["index"]]
            assert frame["ids"] == list(truth.instance_ids)
            for inst, m in zip(truth.instance_ids, truth.masks):
                assert np.array_equal(st.orig_mask(row, inst), m)  # exact, at original size
                small = np.asarray(st.mask_array[st.instance_rows(row)[inst]])
                assert small.shape == (p.data.input_size,) * 2 and small.any() == m.any()
                n_checked += 1
    assert n_checked > 20
    # every split's sentences and pairs add up; the missed video is counted, not stored
    assert summary["skipped"]["missed_video"]["count"] == 1
    ids = {v["id"] for s in ("train", "val", "test") for v in open_split(p.processed, s).videos}
    missed = (p.raw_root("a2d") / "text_annotations" / "a2d_missed_videos.txt").read_text().split()
    assert not ids & set(missed)


def test_val_is_a_deterministic_holdout_of_train(tiny_store):
    p = tiny_store
    train_ids = {v["id"] for v in open_split(p.processed, "train").videos}
    val_ids = {v["id"] for v in open_split(p.processed, "val").videos}
    assert val_ids and not train_ids & val_ids
    assert val_videos(sorted(train_ids | val_ids), p.data.val_fraction) == val_ids


def test_vocab_is_built_from_training_sentences_only(tiny_store):
    p = tiny_store
    vocab = Vocab.load(p.processed / "vocab.json")
    train_words = {w for s in open_split(p.processed, "train").samples for w in s.text.lower().split()}
    assert set(vocab.words) <= {w.strip(",.") for w in train_words}


def test_frames_decode_to_the_referent_colour(tiny_store):
    """Stored frames are RGB in image orientation: the referent's pixels differ from the background."""
    st = open_split(tiny_store.processed, "test")
    s = st.samples[0]
    row = s.frames[0]
    frame = np.asarray(st.frame_array[row]).astype(float)
    mask = np.asarray(st.mask_array[st.instance_rows(row)[s.referent]]).astype(bool)
    assert frame.shape == (tiny_store.data.input_size, tiny_store.data.input_size, 3)
    inside = frame[mask].mean(0)
    assert np.abs(inside - frame[~mask].mean(0)).max() > 20


def test_rerun_reuses_cached_videos_and_is_identical(tiny_store, monkeypatch):
    before = json.loads((tiny_store.processed / "summary.json").read_text())["fingerprint"]
    calls = []
    monkeypatch.setattr(chunks_mod, "load_frames", lambda *a: calls.append(a) or (_ for _ in ()).throw(AssertionError))
    summary = extract(tiny_store)
    assert calls == [] and summary["fingerprint"] == before


def test_killed_extraction_leaves_no_complete_looking_store_and_resumes(tmp_path, monkeypatch):
    p = tiny_params(tmp_path)
    generate(p)
    real = chunks_mod.load_frames
    seen = []

    def dies_after_three(video, indices):
        if len(seen) == 3:
            raise KeyboardInterrupt
        seen.append(video.video_id)
        return real(video, indices)

    monkeypatch.setattr(chunks_mod, "load_frames", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        extract(p)
    assert not (p.processed / "summary.json").exists()
    assert len(list((p.outputs / "extract_cache").glob("*.npz"))) == 3  # work done is kept
    resumed = []
    monkeypatch.setattr(chunks_mod, "load_frames", lambda v, i: resumed.append(v.video_id) or real(v, i))
    summary = extract(p)
    assert not set(seen) & set(resumed)  # the three finished videos were not decoded again
    assert (p.processed / "summary.json").exists() and summary["splits"]["train"]["sentences"] > 0


def _copy_raw(tiny_store, tmp_path):
    p = tiny_params(tmp_path)
    shutil.copytree(tiny_store.raw_root("a2d").parent, p.raw_root("a2d").parent)
    return p


def test_worker_processes_build_the_same_store(tiny_store, tmp_path):
    p = _copy_raw(tiny_store, tmp_path)
    serial = extract(p.replace(**{"data.extract_workers": 1}))
    for done in (p.processed, p.outputs / "extract_cache"):
        shutil.rmtree(done)
    parallel = extract(p.replace(**{"data.extract_workers": 2}))
    assert parallel["fingerprint"] == serial["fingerprint"]
    assert parallel["skipped"] == serial["skipped"]  # worker ledgers merged into one


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_mp4_names_the_file_or_is_counted(tiny_store, tmp_path, workers):
    p = _copy_raw(tiny_store, tmp_path).replace(**{"data.extract_workers": workers})
    vid = next(iter(read_a2d(p.raw_root("a2d"), SkipLedger()))).video_id
    mp4 = a2d.video_path(p.raw_root("a2d"), vid)
    mp4.write_bytes(mp4.read_bytes()[:300])  # truncated
    with pytest.raises(DataError, match=rf"{vid}\.mp4: .*(corrupt|truncated).*data.allow_skip") as err:
        extract(p)
    assert not (p.processed / "summary.json").exists()
    # structured fields, also across a worker process: the class, and the detail without the hint
    assert err.value.problem_class == "corrupt_video"
    assert f"{vid}.mp4: " in err.value.detail and "to skip" not in err.value.detail
    summary = extract(p.replace(**{"data.allow_skip": ["corrupt_video"]}))
    assert summary["skipped"]["corrupt_video"] == {"count": 1, "examples": [err.value.detail]}


def test_mask_size_differs_from_decoded_frames(tiny_store, tmp_path):
    p = _copy_raw(tiny_store, tmp_path)
    video = next(iter(read_a2d(p.raw_root("a2d"), SkipLedger())))
    for f in video.frames:  # rewrite every mask of the video 2 px wider than its mp4
        wide = np.ones((len(f.instance_ids), video.height, video.width + 2), bool)
        a2d_write.write_frame_h5(p.raw_root("a2d"), video.video_id, f.index + 1, f.instance_ids, wide)
    with pytest.raises(DataError, match=rf"{video.video_id}\.mp4: decoded frames are .* but the annotations say"):
        extract(p)
    assert extract(p.replace(**{"data.allow_skip": ["mask_size"]}))["skipped"]["mask_size"]["count"] == 1


def test_missing_root_is_one_clear_error(tmp_path):
    p = tiny_params(tmp_path)
    with pytest.raises(DataError, match=r"raw/a2d: A2D Sentences dataset root not found; run the generate stage"):
        extract(p)


def test_excluded_video_changes_nothing_else_in_the_store(tiny_store, tmp_path):
    """e7Kjy13woXg (real release: in videoset.csv, rows at a2d_annotation.txt:4444-4445) is
    excluded by id: with it added, valid in every file, the store is byte-identical."""
    p = _copy_raw(tiny_store, tmp_path)
    without = extract(p)
    root, vid = p.raw_root("a2d"), "e7Kjy13woXg"
    donor = next(iter(read_a2d(root, SkipLedger())))  # a valid video, copied under the id
    videoset = root / "Release" / "videoset.csv"
    row = next(line for line in videoset.read_text().splitlines() if line.startswith(f"{donor.video_id},"))
    videoset.write_text(videoset.read_text() + row.replace(donor.video_id, vid, 1) + "\n")
    shutil.copy(a2d.video_path(root, donor.video_id), a2d.video_path(root, vid))
    shutil.copytree(root / a2d.INSTANCES / donor.video_id, root / a2d.INSTANCES / vid)
    with open(root / a2d.ANNOTATIONS, "a") as f:
        f.writelines(f"{vid},{e.referent},{e.text}\n" for e in donor.expressions)
    (p.outputs / ".processed.tmp-killed").mkdir()  # left by a killed earlier run
    summary = extract(p)
    assert summary["fingerprint"] == without["fingerprint"] and summary["splits"] == without["splits"]
    excluded = summary["skipped"].pop("excluded_video")
    assert excluded["count"] == 1 and excluded["examples"][0].startswith(f"{vid}: public A2D loaders exclude it by id")
    assert summary["skipped"] == without["skipped"]
    ids = {v["id"] for s in ("train", "val", "test") for v in open_split(p.processed, s).videos}
    assert vid not in ids and donor.video_id in ids
    # the store was swapped in by core.io.staged_dir: no temp or old sibling is left
    assert sorted(x.name for x in p.outputs.iterdir()) == ["extract_cache", "processed", "raw"]


def test_store_carries_classes_and_attributes_of_the_ground_truth(tiny_store):
    """index.json: per video its classes, per sample its attribute; the store's distractor flag
    is the plan's same-class flag (every actor is visible in every annotated frame)."""
    p = tiny_store
    plan = plan_dataset(p)
    scenes = {s.video_id: s for s in (*plan.train, *plan.test, *plan.jhmdb)}
    for split in ("train", "val", "test", "jhmdb"):
        st = open_split(p.processed, split)
        index = json.loads((p.processed / split / "index.json").read_text())
        for i, (s, raw) in enumerate(zip(st.samples, index["samples"])):
            scene = scenes[st.videos[s.video]["id"]]
            sentence = next(x for x in scene.sentences if x.text == s.text)
            assert s.attribute == raw["attribute"] == sentence.key
            if split == "jhmdb":  # the referent's mask only: classes unknown
                assert index["videos"][s.video]["classes"] is None and st.has_distractor(i) is None
            else:
                assert index["videos"][s.video]["classes"] == {str(a.instance_id): a.cls for a in scene.actors}
                assert st.instance_class(s.video, s.referent) == scene.actor(s.referent).cls
                assert st.has_distractor(i) == sentence.same_class


def test_ground_truth_is_part_of_the_store_identity(tiny_store, tmp_path, monkeypatch):
    """A changed class or a removed sidecar is a new fingerprint, with every video's chunk reused."""
    p = _copy_raw(tiny_store, tmp_path)
    before = extract(p)["fingerprint"]
    sidecar = p.raw_root("a2d") / a2d.GROUND_TRUTH
    doc = json.loads(sidecar.read_text())
    vid = next(iter(doc["classes"]))
    doc["classes"][vid] = {k: "zeppelin" for k in doc["classes"][vid]}
    sidecar.write_text(json.dumps(doc))
    monkeypatch.setattr(chunks_mod, "load_frames", lambda *a: pytest.fail("decoded a cached video again"))
    changed = extract(p)["fingerprint"]
    sidecar.unlink()
    removed = extract(p)["fingerprint"]
    assert len({before, changed, removed}) == 3
    st = open_split(p.processed, "test")
    assert all(c is None for c in st.video_classes) and all(s.attribute is None for s in st.samples)


def test_the_same_data_mounted_elsewhere_has_the_same_fingerprint(tiny_store, tmp_path):
    """Two machines with their own copy of the raw data at other paths: index.json records where
    each video was read from, but the store's identity (every run hash and queue name) does not."""
    a, b = (_copy_raw(tiny_store, tmp_path / name) for name in ("a", "b"))
    first, second = extract(a), extract(b)
    index = [(p.processed / "test" / "index.json").read_text() for p in (a, b)]
    assert index[0] != index[1] and str(a.outputs) in index[0]  # the sources differ
    assert first["fingerprint"] == second["fingerprint"]
