"""Extraction of Ref-YouTube-VOS and MeViS (data.dataset: ytvos | mevis) into the processed store.

Tiny datasets in the real on-disk layouts are written with core.data.ytvos_write and
core.data.mevis_write into tmp_path, read as data.source: real, and extracted; the store is
checked against what was written: the splits (offline hold-out / valid_u as test), the masks
(exact at original size, and resized as the store resizes them), the multi-object union, the
window frames of JPEG folders, the chunk cache and the summary's counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.data import chunks as chunks_mod
from core.data import mevis_write as mw
from core.data import registry
from core.data import ytvos_write as yw
from core.data.chunks import resize_frames, resize_masks
from core.data.extract import extract, read_sources, val_videos
from core.data.images import frame_files
from core.data.mevis import is_virtual, read_mevis, virtual_id
from core.data.store import open_split
from core.data.types import SkipLedger
from core.data.ytvos import meta_expressions_path, offline_split, read_ytvos
from core.errors import DataError, ParamsError

from .conftest import tiny_params

SPLITS = ("train", "val", "test")


def _stored_ids(p, split: str) -> set[str]:
    return {v["id"] for v in open_split(p.processed, split).videos}


def _check_masks(p, split: str, truth: dict[str, dict[int, dict[int, np.ndarray]]]) -> int:
    """Every stored mask of `split` equals truth[video][frame index][instance id]: exactly at the
    original size, and at the store's size as chunks.resize_masks makes it; returns how many."""
    st = open_split(p.processed, split)
    n = 0
    for row, frame in enumerate(st.frames):
        video = st.videos[frame["video"]]["id"]
        if not frame["annotated"]:
            assert frame["ids"] == []
            continue
        want = truth[video][frame["index"]]
        assert frame["ids"] == [i for i in want if want[i].any()]
        for inst in frame["ids"]:
            assert np.array_equal(st.orig_mask(row, inst), want[inst])
            small = np.asarray(st.mask_array[st.instance_rows(row)[inst]])
            assert np.array_equal(small, resize_masks(want[inst][None], p.data.input_size)[0])
            n += 1
    return n


# ---------------------------------------------------------------- Ref-YouTube-VOS
YH, YW, YT = 24, 40, 9  # 9 annotated frames: chosen 0, 4, 8; window 1 adds 1, 3, 5, 7 (never 9)
N_YTVOS = 8


def _yt_frames(k: int) -> np.ndarray:
    """Frame t of video k is uniformly grey (lossless enough through JPEG to compare)."""
    return np.stack([np.full((YH, YW, 3), 10 + 20 * t + 3 * k, np.uint8) for t in range(YT)])


def _yt_ids(k: int) -> np.ndarray:
    """Object 1 in every frame, moving right; object 2 in frames 0-4 only (absent in frame 8)."""
    ids = np.zeros((YT, YH, YW), np.uint8)
    for t in range(YT):
        ids[t, 2:8, 1 + 3 * t : 6 + 3 * t] = 1
    ids[:5, 14:20, 20 + k : 30 + k] = 2
    return ids


def build_ytvos(root: Path) -> Path:
    videos = []
    for k in range(N_YTVOS):
        exprs: list[tuple[str, int | None]] = [(f"the red car number {k}", 1), (f"the blue truck {k}", 2)]
        if k == 0:  # an empty expression, and one whose object is in no annotated frame
            exprs += [("   ", 1), ("the ghost car", 3)]
        videos.append(yw.TwinVideo(f"yt{k}", _yt_frames(k), exprs, _yt_ids(k), {1: "car", 2: "truck", 3: "car"}))
    yw.write_split(root, "train", videos)
    path = meta_expressions_path(root, "train")
    doc = json.loads(path.read_text())
    doc["videos"]["yt1"]["frames"].append("00099")  # listed without a JPEG
    doc["videos"]["gone"] = {"frames": ["00000"], "expressions": {"0": {"exp": "a cat", "obj_id": "1"}}}  # no folder
    path.write_text(json.dumps(doc))
    return root


# what extraction skips and counts (core.data.defects): two quirks, and two problems of the
# classes the tests allow in data.allow_skip (otherwise each is a one-line error)
ALLOWED = ("empty_sentence", "missing_video")
YTVOS_SKIPS = {
    "referent_never_visible": 1,  # yt0 "the ghost car"
    "empty_sentence": 1,  # yt0 "   "
    "frame_without_image": 1,  # yt1 00099
    "missing_video": 1,  # gone
}


def ytvos_params(tmp_path: Path, **overrides: object):
    root = build_ytvos(tmp_path / "ytvos")
    settings = {
        "data.source": "real",
        "data.dataset": "ytvos",
        "data.ytvos_root": str(root),
        "data.offline_test_fraction": 0.25,
        "data.window": 1,
        "data.allow_skip": list(ALLOWED),
        **overrides,
    }
    return tiny_params(tmp_path / "out", **settings)


@pytest.fixture(scope="module")
def ytvos_store(tmp_path_factory):
    p = ytvos_params(tmp_path_factory.mktemp("ytvos"))
    return p, extract(p)


def test_ytvos_offline_test_split_is_offline_split_of_the_listed_videos(ytvos_store):
    p, summary = ytvos_store
    listed = json.loads(meta_expressions_path(p.raw_root("ytvos"), "train").read_text())["videos"]
    held_out = offline_split(listed, 0.25, p.data.offline_seed)
    usable = {f"yt{k}" for k in range(N_YTVOS)}
    assert len(held_out) == round(len(listed) * 0.25) == 2
    test, val, train = (_stored_ids(p, s) for s in ("test", "val", "train"))
    assert test == held_out & usable and test  # exactly the offline split ("gone" is not on disk)
    assert val == val_videos(sorted(usable - test), p.data.val_fraction) and len(val) == 1
    assert train == usable - test - val
    assert not (p.processed / "jhmdb").exists() and "jhmdb" not in summary["splits"]
    assert {s: summary["splits"][s]["videos"] for s in SPLITS} == {"train": len(train), "val": 1, "test": len(test)}
    assert summary["dataset"] == "ytvos" and summary["ytvos_root"] == str(p.raw_root("ytvos"))
    assert summary["test_split"]["fraction"] == 0.25 and summary["test_split"]["seed"] == 0
    assert summary["test_split"]["held_out_listed_videos"] == 2
    assert "a2d_root" not in summary


def test_ytvos_masks_frames_and_classes_match_the_written_dataset(ytvos_store):
    p, _ = ytvos_store
    truth = {f"yt{k}": {t: {i: _yt_ids(k)[t] == i for i in (1, 2)} for t in range(YT)} for k in range(N_YTVOS)}
    assert sum(_check_masks(p, s, truth) for s in SPLITS) == N_YTVOS * (3 + 2)  # object 2 absent in frame 8
    s = p.data.input_size
    for split in SPLITS:
        st = open_split(p.processed, split)
        for row, frame in enumerate(st.frames):
            video = st.videos[frame["video"]]
            k = int(video["id"][2:])
            want = resize_frames(_yt_frames(k)[frame["index"] : frame["index"] + 1], s)[0].astype(int)
            assert np.abs(np.asarray(st.frame_array[row]).astype(int) - want).max() <= 3  # JPEG
        for video in st.videos:  # window 1 around 0, 4, 8 in a 9-frame JPEG folder: clamped at 8
            rows = [f for f in st.frames if st.videos[f["video"]] is video]
            assert [f["index"] for f in rows] == [0, 1, 3, 4, 5, 7, 8]
            assert [f["index"] for f in rows if f["annotated"]] == [0, 4, 8]
            assert (video["height"], video["width"]) == (YH, YW)
            assert video["classes"] == {"1": "car", "2": "truck", "3": "car"}
        assert {x.referent for x in st.samples} == {1, 2}


def test_ytvos_quirks_are_counted_in_the_summary(ytvos_store):
    p, summary = ytvos_store
    ledger = SkipLedger(allowed=frozenset(ALLOWED))
    list(read_ytvos(p.raw_root("ytvos"), ledger))
    assert dict(ledger.counts) == YTVOS_SKIPS  # every reader skip ...
    # ... is in the summary, with extraction's own count: object 2 is absent in frame 8 of each video
    assert {k: v["count"] for k, v in summary["skipped"].items()} == {
        **YTVOS_SKIPS,
        "referent_absent_in_frame": N_YTVOS,
    }
    st = open_split(p.processed, "train")
    i, blue = next((i, x) for i, x in enumerate(st.samples) if x.referent == 2)
    assert [st.frames[r]["index"] for r in blue.frames] == [0, 4]
    # ... no training pair there, but a J&F pair with an empty target (DAVIS counts every annotated
    # frame of an expression)
    assert [st.frames[r]["index"] for r in blue.absent] == [8]
    assert [st.frames[r]["index"] for s, r in st.eval_pairs() if s == i] == [0, 4, 8]
    assert not st.orig_mask(blue.absent[0], 2).any() and st.orig_mask(blue.absent[0], 2).shape == (YH, YW)


def test_ytvos_offline_seed_moves_the_test_split_and_reuses_every_chunk(ytvos_store, tmp_path, monkeypatch):
    p, before = ytvos_store
    listed = json.loads(meta_expressions_path(p.raw_root("ytvos"), "train").read_text())["videos"]
    seed = next(s for s in range(1, 50) if offline_split(listed, 0.25, s) != offline_split(listed, 0.25, 0))
    monkeypatch.setattr(chunks_mod, "load_frames", lambda *a: pytest.fail("decoded a cached video again"))
    q = p.replace(**{"data.offline_seed": seed, "paths.outputs": str(tmp_path)})
    (tmp_path / "extract_cache").symlink_to(p.outputs / "extract_cache")
    after = extract(q)
    assert _stored_ids(q, "test") == offline_split(listed, 0.25, seed) & {f"yt{k}" for k in range(N_YTVOS)}
    assert after["fingerprint"] != before["fingerprint"]


def test_ytvos_changed_jpeg_is_decoded_again(tmp_path, monkeypatch):
    """The chunk key covers a JPEG folder's files (it once globbed *.png only: a stale chunk)."""
    p = ytvos_params(tmp_path, **{"data.window": 0})
    extract(p)
    jpeg = frame_files(p.raw_root("ytvos") / "train" / "JPEGImages" / "yt3")[4]
    yw.write_frames(p.raw_root("ytvos"), "train", "yt3", np.full((1, YH, YW, 3), 250, np.uint8), [jpeg.stem])
    real, decoded = chunks_mod.load_frames, []
    monkeypatch.setattr(chunks_mod, "load_frames", lambda v, i: decoded.append(v.video_id) or real(v, i))
    extract(p)
    assert decoded == ["yt3"]
    split = next(s for s in SPLITS if "yt3" in _stored_ids(p, s))
    st = open_split(p.processed, split)
    row = next(r for r, f in enumerate(st.frames) if st.videos[f["video"]]["id"] == "yt3" and f["index"] == 4)
    assert np.abs(np.asarray(st.frame_array[row]).astype(int) - 250).max() <= 3


def test_frame_count_of_a_jpeg_folder(tmp_path):
    root = build_ytvos(tmp_path)
    video = next(iter(read_ytvos(root, SkipLedger(allowed=frozenset(ALLOWED)))))
    assert chunks_mod.frame_count(video) == YT
    assert chunks_mod.wanted_frames(video, 1) == ([0, 1, 3, 4, 5, 7, 8], {0, 4, 8})


# ---------------------------------------------------------------- MeViS
MH, MW, MT = 20, 28, 6  # chosen frames of 6: 0, 2, 5 (of 5 usable: 0, 2, 4)


def _m_frames(k: int, t: int = MT) -> np.ndarray:
    return np.stack([np.full((MH, MW, 3), 15 + 30 * j + 5 * k, np.uint8) for j in range(t)])


def _box(frames: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    m = np.zeros((MT, MH, MW), bool)
    for j, (y0, y1, x0, x1) in frames.items():
        m[j, y0:y1, x0:x1] = True
    return m


LEFT = _box({j: (2, 9, 1 + j, 8 + j) for j in range(MT)})
RIGHT = _box({j: (6, 14, 15, 22 + (j % 2)) for j in range(MT)})  # overlaps nothing
EARLY = _box({j: (12, 18, 2, 9) for j in range(3)})  # frames 0-2 only
BLINK = _box({1: (0, 4, 20, 26)})  # frame 1 only: never in a chosen frame
NEVER = np.zeros((MT, MH, MW), bool)


def mevis_train() -> list[mw.MevisVideoSpec]:
    E = mw.MetaExpression
    return [
        mw.MevisVideoSpec(
            "m0",
            _m_frames(0),
            {1: LEFT, 2: RIGHT, 3: EARLY, 4: NEVER, 5: BLINK},
            [
                E("the two boxes", (2, 1)),  # multi-object: the union of 1 and 2
                E("the left box", (1,)),
                E("the box on the left and the early one", (1, 3)),  # a second union
                E("   ", (1,)),  # empty text
                E("nothing at all", ()),  # no target
                E("the missing one", (99,)),  # anno_id not in mask_dict
                E("the ghost", (4,)),  # null in every frame
                E("the blinking box", (5,)),  # in no chosen frame
            ],
        ),
        mw.MevisVideoSpec("m1", _m_frames(1), {11: LEFT, 12: RIGHT}, [E("the right box", (12,)), E("left", (11,))]),
        mw.MevisVideoSpec("m2", _m_frames(2), {21: RIGHT, 22: EARLY}, [E("the early box", (22,))]),
        mw.MevisVideoSpec("m3", _m_frames(3), {31: LEFT}, []),  # no expressions
    ]


def mevis_valid_u() -> list[mw.MevisVideoSpec]:
    E = mw.MetaExpression
    return [
        mw.MevisVideoSpec("u0", _m_frames(4), {41: LEFT, 42: RIGHT}, [E("both boxes", (41, 42)), E("right", (42,))]),
        mw.MevisVideoSpec("u1", _m_frames(5), {51: EARLY}, [E("the early one", (51,))]),
    ]


OBJECTS = {  # video -> anno_id -> bool [T, H, W], as written
    **{v.video_id: dict(v.objects) for v in mevis_train()},
    **{v.video_id: dict(v.objects) for v in mevis_valid_u()},
}
UNIONS = {"m0": [(1, 2), (1, 3)], "u0": [(41, 42)]}
FRAME_SEED = {"m0": 0, "m1": 1, "m2": 2, "m3": 3, "u0": 4, "u1": 5}  # the k of _m_frames(k)

MEVIS_SKIPS = {
    "empty_sentence": 1,  # allowed in data.allow_skip
    "mevis_expression_without_target": 1,
    "mevis_anno_id_not_in_mask_dict": 1,
    "mevis_target_always_null": 1,
    "referent_never_visible": 1,  # the blinking box
    "video_without_sentences": 1,  # m3
    "frame_without_image": 1,  # m1 00005
}


def build_mevis(root: Path) -> Path:
    mw.write_split(root, "train", mevis_train())
    mw.write_split(root, "valid_u", mevis_valid_u())
    (root / "train" / "JPEGImages" / "m1" / "00005.jpg").unlink()  # the last listed frame: no JPEG
    return root


def mevis_truth() -> dict[str, dict[int, dict[int, np.ndarray]]]:
    """video -> frame -> instance id -> mask: the real objects named by expressions, then the unions."""
    named = {"m0": (1, 2, 3, 4, 5), "m1": (11, 12), "m2": (22,), "u0": (41, 42), "u1": (51,)}
    out: dict = {}
    for vid, ids in named.items():
        out[vid] = {}
        for t in range(MT):
            masks = {i: OBJECTS[vid][i][t] for i in sorted(ids)}  # a frame's ids: real ascending, then virtual
            for members in sorted(UNIONS.get(vid, []), key=virtual_id):
                masks[virtual_id(members)] = np.logical_or.reduce([OBJECTS[vid][a][t] for a in members])
            out[vid][t] = masks
    return out


@pytest.fixture(scope="module")
def mevis_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mevis")
    root = build_mevis(tmp / "mevis")
    settings = {"data.source": "real", "data.dataset": "mevis", "data.mevis_root": str(root)}
    p = tiny_params(tmp / "out", **settings, **{"data.allow_skip": ["empty_sentence"]})
    return p, extract(p)


def test_mevis_train_and_valid_u_become_train_val_and_test(mevis_store):
    p, summary = mevis_store
    assert _stored_ids(p, "test") == {"u0", "u1"}  # valid_u
    train_val = {"m0", "m1", "m2"}  # m3 has no sentences
    val = _stored_ids(p, "val")
    assert val == val_videos(sorted(train_val), p.data.val_fraction) and len(val) == 1
    assert _stored_ids(p, "train") == train_val - val
    assert not (p.processed / "jhmdb").exists() and set(summary["splits"]) == set(SPLITS)
    assert summary["dataset"] == "mevis" and summary["mevis_root"] == str(p.raw_root("mevis"))
    assert summary["test_split"] == {"kind": "valid_u"} and summary["virtual_instances"] == 3


def test_mevis_masks_match_the_written_dataset(mevis_store):
    p, _ = mevis_store
    truth = mevis_truth()
    assert sum(_check_masks(p, s, truth) for s in SPLITS) > 20
    for split in SPLITS:
        st = open_split(p.processed, split)
        assert all(v["classes"] is None for v in st.videos)  # MeViS gives no categories
        for row, f in enumerate(st.frames):
            k = FRAME_SEED[st.videos[f["video"]]["id"]]
            want = resize_frames(_m_frames(k)[f["index"] : f["index"] + 1], p.data.input_size)[0].astype(int)
            assert np.abs(np.asarray(st.frame_array[row]).astype(int) - want).max() <= 3


def test_mevis_multi_object_target_is_the_union(mevis_store):
    p, _ = mevis_store
    split = next(s for s in SPLITS if "m0" in _stored_ids(p, s))
    st = open_split(p.processed, split)
    index = json.loads((p.processed / split / "index.json").read_text())
    row_m0 = next(i for i, v in enumerate(st.videos) if v["id"] == "m0")
    both = virtual_id((1, 2))
    assert index["videos"][row_m0]["unions"] == {str(virtual_id(m)): list(m) for m in sorted(UNIONS["m0"])}
    s = next(x for x in st.samples if x.text == "the two boxes")
    assert s.referent == both and is_virtual(s.referent)
    assert [st.frames[r]["index"] for r in s.frames] == [0, 2, 5]
    for r in s.frames:
        t = st.frames[r]["index"]
        assert np.array_equal(st.orig_mask(r, both), LEFT[t] | RIGHT[t])
        assert {1, 2, both} <= set(st.frames[r]["ids"])  # the members stay instances of the frame
    early = next(x for x in st.samples if x.text == "the box on the left and the early one")
    for r in early.frames:  # where the early box is gone, the union is the left box alone
        t = st.frames[r]["index"]
        assert np.array_equal(st.orig_mask(r, early.referent), LEFT[t] | EARLY[t])
    assert {x.text for x in st.samples if x.video == row_m0} == {
        "the two boxes",
        "the left box",
        "the box on the left and the early one",
    }
    test = open_split(p.processed, "test")
    u = next(x for x in test.samples if x.text == "both boxes")
    assert u.referent == virtual_id((41, 42))
    assert all(
        np.array_equal(test.orig_mask(r, u.referent), LEFT[i] | RIGHT[i])
        for r in u.frames
        for i in [test.frames[r]["index"]]
    )
    for video in (*st.videos, *test.videos):
        if video["id"] not in UNIONS:
            assert "unions" not in video


def test_mevis_quirks_are_counted_in_the_summary(mevis_store):
    p, summary = mevis_store
    ledger = SkipLedger(allowed=frozenset({"empty_sentence"}))
    for split in ("train", "valid_u"):
        list(read_mevis(p.raw_root("mevis"), ledger, split))
    assert dict(ledger.counts) == MEVIS_SKIPS
    # extraction's own count: the early box of m2 and of u1 is gone in their chosen frame 5
    assert {k: v["count"] for k, v in summary["skipped"].items()} == {**MEVIS_SKIPS, "referent_absent_in_frame": 2}


# ---------------------------------------------------------------- params and roots
@pytest.mark.parametrize("dataset, key", [("ytvos", "data.ytvos_root"), ("mevis", "data.mevis_root")])
def test_unset_root_of_the_chosen_dataset_is_one_line_naming_the_key(tmp_path, dataset, key):
    with pytest.raises(ParamsError) as err:
        tiny_params(tmp_path, **{"data.source": "real", "data.dataset": dataset})
    msg = str(err.value)
    assert f"but {key} is not set" in msg and "\n" not in msg
    p = tiny_params(tmp_path, **{"data.source": "real", "data.a2d_root": str(tmp_path)})
    with pytest.raises(ParamsError, match=rf"^{key}: not set"):
        registry.get(dataset).root_of(p)


@pytest.mark.parametrize("dataset, key", [("ytvos", "data.ytvos_root"), ("mevis", "data.mevis_root")])
def test_missing_root_folder_is_one_line_naming_the_key(tmp_path, dataset, key):
    p = tiny_params(
        tmp_path / "out", **{"data.source": "real", "data.dataset": dataset, key: str(tmp_path / "nowhere")}
    )
    with pytest.raises(DataError) as err:
        extract(p)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'nowhere'}: ") and f"set {key} to your" in msg and "\n" not in msg
    synthetic = tiny_params(tmp_path / "syn", **{"data.dataset": dataset})
    assert registry.get(dataset).root_of(synthetic) == synthetic.outputs / "raw" / dataset
    with pytest.raises(DataError, match=rf"raw/{dataset}: .* root not found; run the generate stage first"):
        extract(synthetic)


def test_synthetic_source_reads_the_raw_folder(tmp_path):
    p = tiny_params(tmp_path, **{"data.dataset": "mevis"})
    build_mevis(p.raw_root("mevis"))
    splits = [split for split, _ in read_sources(p, SkipLedger(allowed=frozenset({"empty_sentence"})))]
    assert splits == ["train"] * 3 + ["test"] * 2


def test_default_a2d_store_is_unchanged(tiny_store):
    """data.dataset defaults to a2d: the A2D + J-HMDB store, with the dataset in the summary."""
    p = tiny_store
    assert p.data.dataset == "a2d" and p.raw_dataset == p.raw_root("a2d")
    summary = json.loads((p.processed / "summary.json").read_text())
    assert summary["dataset"] == "a2d" and summary["a2d_root"] == str(p.raw_root("a2d"))
    assert summary["jhmdb_root"] == str(p.raw_root("jhmdb")) and "test_split" not in summary
    assert set(summary["splits"]) == {"train", "val", "test", "jhmdb"}
    for split in summary["splits"]:
        assert all("unions" not in v for v in open_split(p.processed, split).videos)


@pytest.mark.parametrize("dataset", ["ytvos", "mevis"])
def test_the_synthetic_twin_runs_generate_extract_train_and_evaluate(dataset, tmp_path):
    """The generate stage writes the twin of data.dataset; the real reader, extraction, one short
    training run and its evaluation run on it unchanged (no J-HMDB split for these datasets)."""
    from core.data.synthetic import generate
    from core.evaluate import evaluate_run
    from core.train import train

    p = tiny_params(
        tmp_path,
        **{"data.dataset": dataset, "model.init": "scratch", "train.epochs": 1, "train.max_steps_per_epoch": 2},
    )
    summary = generate(p)
    assert summary["dataset"] == dataset and p.raw_dataset.is_dir()
    stored = extract(p)
    assert stored["dataset"] == dataset and not stored["skipped"]  # a clean twin: nothing to skip
    assert all(_stored_ids(p, s) for s in SPLITS) and not (p.processed / "jhmdb").exists()
    if dataset == "mevis":  # the multi-object expressions' union instances are indexed
        index = json.loads((p.processed / "train" / "index.json").read_text())
        assert any(v.get("unions") for v in index["videos"])
    run = train(p, name="twin", tracking_enabled=False)
    metrics = evaluate_run(p, run.run_dir, None, tracking_enabled=False)
    assert set(metrics) == {"val", "test", "test_shuffled"}


def test_a_union_target_and_its_members_are_never_each_others_negatives(tmp_path):
    """MeViS: a multi-object expression's union instance overlaps its members; in a training clip
    (Eq. 2's negatives are the clip's other instances) neither may be a negative of the other."""
    from core.data.dataset import ClipDataset, pick_frames
    from core.data.synthetic import generate
    from core.data.vocab import Vocab

    p = tiny_params(tmp_path, **{"data.dataset": "mevis", "data.synthetic.train_videos": 30})
    generate(p)
    extract(p)
    store = open_split(p.processed, "train")
    ds = ClipDataset(store, Vocab.load(p.processed / "vocab.json"), p.data, train=False)
    union_cases = member_cases = 0
    for i, s in enumerate(store.samples):
        target = store.objects_of(s.video, s.referent)
        frame_ids = {x for r in pick_frames(s.frames, p.data.clip_frames, None) for x in store.frames[r]["ids"]}
        kept = [x for x in sorted(frame_ids) if x == s.referent or target.isdisjoint(store.objects_of(s.video, x))]
        item = ds[i]
        assert item["masks"].shape[1] == len(kept) and kept[item["referent"]] == s.referent
        if is_virtual(s.referent):
            union_cases += 1
            assert not (target & set(kept))  # no member of the target among the negatives
        elif any(is_virtual(x) and s.referent in store.objects_of(s.video, x) for x in frame_ids):
            member_cases += 1  # a union holding this referent is in the frames, and is dropped
            assert not any(is_virtual(x) for x in kept if s.referent in store.objects_of(s.video, x))
    assert union_cases and member_cases
