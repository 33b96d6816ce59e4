"""core.export: the submission zips of Ref-YouTube-VOS valid and MeViS valid, on the synthetic twins.

The twins are written by the real writers (core.data.synthetic.twins) at params.raw_root("ytvos") /
params.raw_root("mevis"), with a few defects added by hand (a listed frame without its JPEG, an empty
expression, a listed video missing on disk, skipped under data.allow_skip missing_video); the
model is a tiny untrained CVLS with a vocabulary built from the twin's train sentences like
extraction builds it. Such a split cannot be submitted whole: the export fails, or writes the
partial zip with allow_incomplete (what the fixture does, to look at it)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import export
from core.checkpoint import build_model, save_checkpoint
from core.config import Params
from core.data import mevis, ytvos
from core.data.chunks import Chunk, chunk_for
from core.data.dataset import MEAN, STD, collate_frames
from core.data.images import frame_files
from core.data.synthetic import plan, twins
from core.data.types import SkipLedger
from core.data.vocab import Vocab, tokenize
from core.errors import DataError, UserError
from core.metrics import predict_mask
from core.model import CVLS
from core.runtime import autocast, channels_last, on_device

from .conftest import tiny_params

CPU = torch.device("cpu")
VALID_VIDEOS = 2
GHOST = "ghost_video"  # listed in valid's meta_expressions.json, no JPEG folder
# the first valid video's quirks: a listed frame whose JPEG is deleted, a JPEG that is not listed,
# and the hand-checked frame after both (JPEG position 2, position 1 among the predicted frames)
REMOVED = {"ytvos": "00010", "mevis": "00002"}
UNLISTED = {"ytvos": "00005", "mevis": "00001"}
CHECKED = {"ytvos": "00015", "mevis": "00003"}


@dataclass
class Case:
    dataset: str
    params: Params
    root: Path
    vocab: Vocab
    model: CVLS
    result: export.ExportResult
    first: str  # the first valid video (the one with the quirks)

    def members(self) -> list[str]:
        with zipfile.ZipFile(self.result.path) as zf:
            return zf.namelist()

    def png(self, name: str) -> Image.Image:
        with zipfile.ZipFile(self.result.path) as zf:
            img = Image.open(io.BytesIO(zf.read(name)))
            img.load()
        return img

    def meta(self) -> dict:
        path = ytvos.meta_expressions_path(self.root, "valid") if self.dataset == "ytvos" else self.meta_mevis()
        return json.loads(path.read_text())["videos"]

    def meta_mevis(self) -> Path:
        return mevis.meta_path(self.root, "valid")

    def jpeg(self, video_id: str, name: str) -> Path:
        return _jpeg(self.dataset, self.root, video_id, name)

    @property
    def prefix(self) -> str:
        """The zip's root folder: Annotations/ for Ref-YouTube-VOS, none for MeViS."""
        return "Annotations/" if self.dataset == "ytvos" else ""


def _jpeg(dataset: str, root: Path, video_id: str, name: str) -> Path:
    if dataset == "ytvos":
        return ytvos.frame_path(root, "valid", video_id, name)
    return mevis.frames_dir(root, "valid", video_id) / mevis.jpeg_name(name)


def _params(outputs: Path, dataset: str, **overrides: object) -> Params:
    changes = {
        "data.dataset": dataset,
        "data.synthetic.train_videos": 4,
        "data.synthetic.test_videos": 2,
        "eval.batch_size": 4,  # 6 frames a video: batches of 4 and 2
        "data.allow_skip": ["missing_video"],  # the ghost video: skipped and counted, not an error
        **overrides,
    }
    return tiny_params(outputs, **changes)


def _edit(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def _build(tmp: Path, dataset: str, defects: bool = True) -> Case:
    params = _params(tmp / "outputs", dataset)
    scenes = plan.plan_dataset(params)
    valid = plan.plan_valid(params, VALID_VIDEOS)
    first = valid[0].video_id
    if dataset == "ytvos":
        root = params.raw_root("ytvos")
        twins.generate_ytvos(root, scenes, valid)
        train = [e.text for v in ytvos.read_ytvos(root, SkipLedger()) for e in v.expressions]

        meta = ytvos.meta_expressions_path(root, "valid")
    else:
        root = params.raw_root("mevis")
        twins.generate_mevis(root, scenes, valid, seed=params.data.synthetic.seed)
        train = [e.text for v in mevis.read_mevis(root, SkipLedger()) for e in v.expressions]

        meta = mevis.meta_path(root, "valid")

    def quirks(doc: dict) -> None:
        doc["videos"][first]["expressions"]["9"] = {"exp": "  "}  # empty: kept, predicted
        doc["videos"][GHOST] = {"expressions": {"0": {"exp": "a red ball"}}, "frames": ["00000"]}
        doc["videos"][first]["frames"].remove(UNLISTED[dataset])

    if defects:
        _edit(meta, quirks)
        _jpeg(dataset, root, first, REMOVED[dataset]).unlink()
    vocab = Vocab.build(train, params.data.vocab_size)  # as extraction builds it: the train sentences
    torch.manual_seed(0)
    model = on_device(build_model(params, vocab, init=False), CPU, params.train).eval()  # untrained; no start weights
    with torch.no_grad():  # widen its logits (small at init), so its masks are neither empty nor full (asserted)
        model.decoder.net[-1].weight.mul_(50.0)
        model.decoder.net[-1].bias.fill_(-2.0)
    result = export.export_predictions(params, model, vocab, CPU, tmp / "run" / "export", allow_incomplete=defects)
    return Case(dataset, params, root, vocab, model, result, first)


@pytest.fixture(scope="module", params=["ytvos", "mevis"])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    return _build(tmp_path_factory.mktemp(f"export-{request.param}"), request.param)


def _expected_members(c: Case) -> list[str]:
    """From the valid meta file itself: every expression x every listed frame with a JPEG."""
    out = []
    for vid, entry in c.meta().items():
        if not mevis.frames_dir(c.root, "valid", vid).is_dir():  # same JPEGImages/<vid> in both layouts
            continue
        for exp_id, e in entry["expressions"].items():
            for name in entry["frames"]:
                if not c.jpeg(vid, name).is_file():
                    continue
                if c.dataset == "ytvos":
                    out.append(ytvos.prediction_path(Path(), vid, exp_id, name).as_posix())
                else:
                    out.append(f"{vid}/{exp_id}/{name.removesuffix('.jpg')}.png")
    return out


def _member(c: Case, vid: str, exp_id: str, name: str) -> str:
    if c.dataset == "ytvos":
        return ytvos.prediction_path(Path(), vid, exp_id, name).as_posix()
    return f"{vid}/{exp_id}/{name.removesuffix('.jpg')}.png"


def _listed(c: Case) -> list[str]:
    """From the valid meta file itself: every expression x every listed frame, in file order (what
    an evaluation server expects, JPEG or not)."""
    return [_member(c, vid, e, name) for vid, v in c.meta().items() for e in v["expressions"] for name in v["frames"]]


# ---------------------------------------------------------------------------------------------


def test_an_incomplete_submission_is_one_line_and_writes_nothing(case: Case, tmp_path: Path) -> None:
    """A listed frame without its JPEG and a listed video missing on disk (skipped, allowed):
    the export names how many masks are missing and the first one, and keeps the previous zip."""
    out = tmp_path / "export"
    previous = out / case.result.path.name
    out.mkdir()
    previous.write_bytes(b"an earlier zip")
    with pytest.raises(DataError) as err:
        export.export_predictions(case.params, case.model, case.vocab, CPU, out)
    listed = _listed(case)
    missing = [m for m in listed if m not in set(case.members())]
    first = f"{case.prefix}{case.first}/0/{REMOVED[case.dataset]}.png"
    assert missing[0] == first and f"{GHOST}/0/00000.png" in missing[-1]
    meta = ytvos.meta_expressions_path(case.root, "valid") if case.dataset == "ytvos" else case.meta_mevis()
    assert str(err.value) == (
        f"{meta}: submission not written: {len(missing)} of the {len(listed)} masks {previous.name} must hold "
        f"are missing (the first: {first} (no JPEG {case.jpeg(case.first, REMOVED[case.dataset])})); "
        "to write the partial zip anyway, pass --allow-incomplete"
    )
    assert previous.read_bytes() == b"an earlier zip" and list(out.iterdir()) == [previous]
    # the fixture's own export passed allow_incomplete: the partial zip, said in its summary's last line
    r = case.result
    assert (r.listed, len(r.missing), r.masks) == (len(listed), len(missing), len(listed) - len(missing))
    assert r.summary().splitlines()[-1] == f"INCOMPLETE (--allow-incomplete): {r.incomplete()}"


@pytest.mark.parametrize("dataset", ["ytvos", "mevis"])
def test_a_complete_split_gets_every_listed_mask(dataset: str, tmp_path: Path) -> None:
    c = _build(tmp_path, dataset, defects=False)
    assert sorted(c.members()) == sorted(_listed(c)) and c.result.missing == []
    assert c.result.listed == c.result.masks and "INCOMPLETE" not in c.result.summary()


def test_zip_members_are_exactly_the_submission_layout(case: Case) -> None:
    members = case.members()
    expected = _expected_members(case)
    assert sorted(members) == sorted(expected) and len(set(members)) == len(members)
    assert not [m for m in members if m.endswith("/")]  # no folder entries, nothing else
    assert all(m.startswith(case.prefix) and m.count("/") == case.prefix.count("/") + 2 for m in members)
    r = case.result
    assert r.path == case.params.outputs.parent / "run" / "export" / f"{case.dataset}_valid_submission.zip"
    assert r.masks == len(members)
    assert r.videos == VALID_VIDEOS
    assert r.frames == len({m.rsplit("/", 3)[-3] + "/" + m.rsplit("/", 1)[-1] for m in members})
    assert r.expressions == len({m.rsplit("/", 1)[0] for m in members})
    assert case.dataset in r.summary() and str(r.masks) in r.summary()


def test_pngs_are_binary_single_channel_at_the_original_size(case: Case) -> None:
    values: set[int] = set()
    for m in case.members():
        vid, _, frame = m.split("/")[-3:]
        img = case.png(m)
        assert img.mode == "L"
        with Image.open(case.jpeg(vid, frame.removesuffix(".png"))) as jpg:
            assert img.size == jpg.size  # (W, H) of that frame's JPEG, not the model's input size
        v = set(np.unique(np.asarray(img)).tolist())
        assert v <= {0, 255}
        values |= v
    assert values == {0, 255}  # the masks are not all empty nor all full
    h, w = case.params.data.synthetic.height, case.params.data.synthetic.width
    assert case.png(case.members()[0]).size == (w, h) != (case.params.data.input_size,) * 2


def test_quirks_are_skipped_and_counted(case: Case) -> None:
    members = case.members()
    first = [m for m in members if m.startswith(f"{case.prefix}{case.first}/")]
    assert case.jpeg(case.first, UNLISTED[case.dataset]).is_file()  # a JPEG, but not listed: not predicted
    for name in (REMOVED[case.dataset], UNLISTED[case.dataset]):
        assert first and not [m for m in first if m.endswith(f"/{name}.png")]
    skipped = {k: v["count"] for k, v in case.result.skipped.items()}
    assert skipped == {"frame_without_image": 1, "missing_video": 1}  # the same rules for both datasets
    assert not [m for m in members if GHOST in m]
    # the empty expression is not skipped: kept (noted), predicted on every frame with a JPEG
    assert {k: v["count"] for k, v in case.result.kept.items()} == {"empty_sentence": 1}
    empty = [m for m in members if m.startswith(f"{case.prefix}{case.first}/9/")]
    assert len(empty) == len(case.meta()[case.first]["frames"]) - 1
    lines = case.result.summary().splitlines()
    assert "  kept empty_sentence: 1 (predicted)" in lines and not [x for x in lines if "skipped empty" in x]


def _hand_prediction(c: Case, vid: str, frame: str, text: str) -> np.ndarray:
    """The protocol's mask of one (frame, sentence), by hand: PIL decode, extraction's resize, the
    dataset's normalisation and tokens, the model's full forward in the run's precision and memory
    format (core.runtime: bf16 + channels_last on a CPU with native bf16 by default), `predict_mask`."""
    from core.data.chunks import resize_frames

    with Image.open(c.jpeg(vid, frame)) as img:
        rgb = np.array(img.convert("RGB"))
    h, w = rgb.shape[:2]
    x = torch.from_numpy(resize_frames(rgb[None], c.params.data.input_size)).permute(0, 3, 1, 2).float()
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1) * 255) / (torch.tensor(STD).view(1, 3, 1, 1) * 255)
    ids = c.vocab.encode(tokenize(text), c.params.data.max_tokens)
    tokens = torch.tensor([ids or [0]])  # no words: one <pad>, length 1 (collate_frames' rule)
    if channels_last(CPU, c.params.train):
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast(CPU, c.params.train):
        logits = c.model(x[None], tokens, torch.tensor([max(len(ids), 1)])).logits[0, 0]
    return predict_mask(torch.sigmoid(logits.float()), (h, w), c.params.eval.threshold).numpy()


def test_masks_equal_the_protocol_prediction_of_a_hand_checked_frame(case: Case) -> None:
    meta = case.meta()[case.first]
    files = [p.stem for p in frame_files(mevis.frames_dir(case.root, "valid", case.first))]
    frame = CHECKED[case.dataset]  # after the unlisted JPEG and the removed one
    listed = [f for f in meta["frames"] if case.jpeg(case.first, f).is_file()]
    assert files.index(frame) == 2 and listed.index(frame) == 1
    exps = ["0", "9"] if case.dataset == "ytvos" else ["0"]  # and ytvos's empty expression
    for exp_id in exps:
        got = np.asarray(case.png(f"{case.prefix}{case.first}/{exp_id}/{frame}.png")) == 255
        want = _hand_prediction(case, case.first, frame, meta["expressions"][exp_id]["exp"])
        assert got.shape == want.shape and 0 < want.sum() < want.size
        assert np.array_equal(got, want)


def test_frames_and_tokens_are_prepared_like_the_store_and_the_dataset(case: Case, tmp_path: Path) -> None:
    if case.dataset == "ytvos":
        video = next(iter(ytvos.read_ytvos(case.root, SkipLedger())))
    else:
        video = next(iter(mevis.read_mevis(case.root, SkipLedger())))
    size = case.params.data.input_size
    chunk = Chunk.load(chunk_for(video, tmp_path, size, 0, SkipLedger()))  # extraction's own chunk
    stored, original = export.store_frames(video.source, chunk.frame_indices.tolist(), size)
    assert np.array_equal(stored, chunk.frames) and original == (video.height, video.width)
    texts = [e.text for e in video.expressions] + ["", "?!"]
    tokens, lengths = export.encode_texts(texts, case.vocab, case.params.data.max_tokens)
    items = [
        {"frames": torch.zeros(1), "tokens": case.vocab.encode(tokenize(t), case.params.data.max_tokens)}
        | {"gt": None, "targets": None}
        for t in texts
    ]
    batch = collate_frames([{**x, "meta": None} for x in items])
    assert torch.equal(tokens, batch["tokens"]) and torch.equal(lengths, batch["lengths"])
    only_empty = export.encode_texts(["", ""], case.vocab, case.params.data.max_tokens)
    assert only_empty[0].tolist() == [[0], [0]] and only_empty[1].tolist() == [1, 1]


def test_a2d_has_no_split_to_submit(tmp_path: Path) -> None:
    params = tiny_params(tmp_path / "outputs")  # data.dataset a2d
    for call in (
        lambda: export.export_predictions(params, None, None, CPU, tmp_path / "export"),  # type: ignore[arg-type]
        lambda: export.export_run(params, tmp_path / "no-run"),  # fails before loading any model
    ):
        with pytest.raises(UserError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg and "ytvos or mevis" in msg and "'a2d'" in msg
    assert not (tmp_path / "export").exists()


def test_missing_root_and_mismatched_vocabulary_are_one_line_errors(case: Case, tmp_path: Path) -> None:
    other = _params(tmp_path / "elsewhere", case.dataset)
    with pytest.raises(DataError, match="dataset root not found; run the generate stage first"):
        export.export_predictions(other, case.model, case.vocab, CPU, tmp_path)
    small = Vocab(case.vocab.words[:3])
    with pytest.raises(UserError, match="not the vocabulary it was trained with"):
        export.export_predictions(case.params, case.model, small, CPU, tmp_path)
    assert not list(tmp_path.rglob("*.zip*"))


def test_the_zip_appears_atomically(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill half way (here KeyboardInterrupt, what Ctrl-C and SIGTERM raise) leaves the old zip,
    or none, under the final name: the zip is written to a temp file and renamed when complete."""
    final = case.result.path
    old = final.read_bytes()
    real = export.png_bytes

    def interrupt_in(out: Path, before: bytes | None):
        calls = []

        def png_bytes(mask):
            calls.append(1)
            target = out / final.name
            if len(calls) == 1:  # mid-export: a temp file is being written, the final name is untouched
                temps = [p for p in out.iterdir() if p.name.startswith(f".{final.name}.")]
                assert len(temps) == 1 and temps[0].name.endswith(".zip.tmp")
                assert (target.read_bytes() if target.exists() else None) == before
            if len(calls) == 5:
                raise KeyboardInterrupt
            return real(mask)

        return png_bytes

    monkeypatch.setattr(export, "png_bytes", interrupt_in(final.parent, old))
    with pytest.raises(KeyboardInterrupt):
        export.export_predictions(case.params, case.model, case.vocab, CPU, final.parent, allow_incomplete=True)
    assert final.read_bytes() == old and [p.name for p in final.parent.iterdir()] == [final.name]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.setattr(export, "png_bytes", interrupt_in(fresh, None))
    with pytest.raises(KeyboardInterrupt):
        export.export_predictions(case.params, case.model, case.vocab, CPU, fresh, allow_incomplete=True)
    assert list(fresh.iterdir()) == []  # no zip, no partial file, no temp left
    monkeypatch.setattr(export, "png_bytes", real)
    again = export.export_predictions(case.params, case.model, case.vocab, CPU, fresh, allow_incomplete=True)
    assert again.path.read_bytes() == old  # same model and data: the same bytes
    assert not case.model.training  # run in eval mode, its mode restored


def test_export_run_exports_a_finished_run_into_its_folder(case: Case, tmp_path: Path) -> None:
    """What `python -m core.evaluate --export` calls: the run's model.pt and the store's vocabulary."""
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir / "model.pt", {"model": case.model.state_dict()})
    params = case.params
    case.vocab.save(params.processed / "vocab.json")  # the twin was never extracted: the store's vocabulary
    result = export.export_run(params, run_dir, CPU, allow_incomplete=True)
    assert result.path == export.export_path(run_dir, params) == run_dir / "export" / case.result.path.name
    assert result.path.read_bytes() == case.result.path.read_bytes()
    assert (result.videos, result.masks, result.skipped) == (case.result.videos, case.result.masks, case.result.skipped)
