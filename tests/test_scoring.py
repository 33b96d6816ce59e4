"""core.scoring: the per-frame and per-sentence caches score exactly what the full forward per pair scores."""

from __future__ import annotations

import torch

from core.checkpoint import build_model, load_vocab
from core.data.dataset import FrameDataset, collate_frames, derangement, to_device
from core.data.store import open_split
from core.metrics import batch_scores, iou
from core.scoring import Features, Memo, predict


def _forward_rows(model, ds, theta):
    """The plain path: the whole model forward on each pair alone; (I, U) and the best IoU with
    another actor of the frame, each mask scored on its own."""
    out = []
    for i in range(len(ds)):
        item = ds[i]
        b = to_device(collate_frames([item]), torch.device("cpu"))
        with torch.no_grad():
            prob = torch.sigmoid(model(b["frames"], b["tokens"], b["lengths"]).logits[:, 0].float())
        others = [iou(*batch_scores(prob, [o], theta)[0]) for o in item["targets"][1:]]
        out.append((*batch_scores(prob, [item["gt"]], theta)[0], max(others) if others else None))
    return out


def test_cached_frame_and_sentence_features_score_like_the_full_forward(tiny_store):
    params = tiny_store.replace(**{"eval.batch_size": 3})  # batches that split a frame's sentences
    torch.manual_seed(0)
    vocab = load_vocab(params)
    model = build_model(params, vocab).eval()
    store = open_split(params.processed, "test")
    features = Features(model)
    plain = FrameDataset(store, vocab, params.data)
    shuffled = FrameDataset(store, vocab, params.data, text_from=derangement(len(store.samples), 0))
    rows = predict(model, plain, params, torch.device("cpu"), "test", features)
    maps, sentences = len(features.frames.rows), len(features.sentences.rows)
    rows_shuffled = predict(model, shuffled, params, torch.device("cpu"), "test_shuffled", features)
    assert maps == len({row for _, row in store.eval_pairs()}) < len(plain)  # one map per frame
    texts = {store.samples[i].text for i, _ in store.eval_pairs()}
    assert sentences == len(texts) < len(plain)  # one vector per distinct sentence
    assert len(features.frames.rows) == maps  # the shuffled control reuses every map
    assert len(features.sentences.rows) == sentences  # and every sentence: a derangement of the same texts
    for ds, got in ((plain, rows), (shuffled, rows_shuffled)):
        scored = [(r["inter"], r["union"], r["other_iou"]) for r in got]
        assert scored == _forward_rows(model, ds, params.eval.threshold)


def test_memo_runs_its_function_once_per_new_key():
    calls: list[list[float]] = []

    def double(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.tolist())
        return 2 * x

    memo = Memo(double)
    assert memo(["a", "b", "a"], torch.tensor([1.0, 2.0, 1.0])).tolist() == [2.0, 4.0, 2.0]
    assert memo(["b", "c"], torch.tensor([9.0, 3.0])).tolist() == [4.0, 6.0]  # "b" kept, its new input unused
    assert calls == [[1.0, 2.0], [3.0]]
    assert memo.missing(["c", "d", "a", "d", "e"]) == {"d": 1, "e": 4}  # first position of each new key
    assert memo(["a", "c"]).tolist() == [2.0, 6.0]  # every key known: no inputs needed
