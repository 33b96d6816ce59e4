"""Evaluation of a trained run: the classic protocol on every split, plus the controls.

    python -m core.evaluate [--params params.yaml] [--set key=value ...] [--out outputs/eval]
                            [--export [--allow-incomplete]]

Splits: `val` (the studies' objective), `test` (A2D-format test split), `jhmdb` (zero-shot,
no fine-tuning), and `test_shuffled`: the test split with every sample paired with another
sample's sentence. A model that uses the language must lose most of its mAP there.
On data.dataset ytvos / mevis every split also gets the DAVIS J, F and J&F over its expressions
(`core.vos_metrics`; J of a pair = its IoU, F in the per-sample file's f column).
Writes `<run>/eval/metrics.json`, `per_sample.csv` (every sample's I, U, IoU and strata: the
report's confidence intervals and paired tests), `bounds.json` (split -> the oracle and the
language-blind bound, `core.bounds`; language_blind absent where classes are unknown),
`strata.json` (split -> stratum -> scores, `core.strata`) and `qualitative.png`, and logs them
to the run (metrics as '<split>/<metric>', 'bound/<bound>/<split>/<metric>' and
'strata/<split>/<stratum>/<metric>'). `--export` (ytvos / mevis) also writes the official valid
split's predicted masks as a submission zip in <run>/export/ (`core.export`): complete, or a
one-line error and nothing written; `--allow-incomplete` writes a partial zip and says so.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from core import tracking  # noqa: E402
from core.bounds import pair_bounds, store_bounds  # noqa: E402
from core.checkpoint import load_model, load_vocab  # noqa: E402
from core.cli import params_from, parser, run_main  # noqa: E402
from core.config import Params  # noqa: E402
from core.data.dataset import FrameDataset, collate_frames, derangement, to_device  # noqa: E402
from core.data.store import SplitStore, open_split  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.export import export_run, submission_spec  # noqa: E402
from core.io import atomic_path, staged_dir, write_csv, write_json  # noqa: E402
from core.metrics import intersection_union, iou, predict_mask  # noqa: E402
from core.model import CVLS  # noqa: E402
from core.results import (
    BOUND_PAIR_COLUMNS,
    BOUND_PAIRS,
    EVAL_FILES,
    SAMPLE_COLUMNS,
    flat_bounds,
    flat_metrics,
    flat_strata,
    mlflow_metrics,
)  # noqa: E402
from core.runtime import autocast, channels_last, pick_device  # noqa: E402
from core.scoring import Features, predict, summarize_rows  # noqa: E402
from core.strata import pair_strata, strata_metrics  # noqa: E402
from core.train import train  # noqa: E402
from core.vos_metrics import JF_KEYS  # noqa: E402

log = logging.getLogger("cvls")

# what one evaluation leaves in <run>/eval/ (published together; all present = evaluated)


def qualitative_figure(
    model: CVLS, store: SplitStore, ds: FrameDataset, params: Params, device: torch.device
) -> plt.Figure:
    """Frames with predicted vs true mask, for a fixed set of samples: those with the most
    other objects in the frame, one per video (same-class distractors are among them on the benchmark)."""
    n = params.eval.qualitative_samples
    crowd = sorted((-len(store.frames[row]["ids"]), i) for i, (_, row) in enumerate(ds.pairs))
    picks, seen = [], set()
    for _, i in crowd:  # the most crowded frame of each video, so the panels show different clips
        video = store.frames[ds.pairs[i][1]]["video"]
        if video not in seen and len(picks) < n:
            seen.add(video)
            picks.append(i)
    fig, axes = plt.subplots(len(picks), 2, figsize=(7, 2.9 * len(picks)), squeeze=False)
    for r, i in enumerate(picks):
        item = ds[i]
        b = to_device(collate_frames([item]), device, channels_last(device, params.train))
        with torch.no_grad(), autocast(device, params.train):
            prob = torch.sigmoid(model(b["frames"], b["tokens"], b["lengths"]).logits[0, 0].float()).cpu()
        gt = item["gt"]
        pred = predict_mask(prob, tuple(gt.shape), params.eval.threshold)
        video = store.videos[store.frames[ds.pairs[i][1]]["video"]]
        image = np.asarray(_original_frame(store, ds.pairs[i][1], video))
        for c, (mask, title) in enumerate(((gt, "ground truth"), (pred, "prediction"))):
            ax = axes[r, c]
            ax.imshow(image)
            # outlines, not fills: a fill in any colour hides an actor of that colour
            if mask.any():
                ax.contour(mask.numpy().astype(float), levels=[0.5], colors=["black"], linewidths=3.2)
                ax.contour(mask.numpy().astype(float), levels=[0.5], colors=["white"], linewidths=1.6)
            ax.set_title(
                f'{title}: "{item["meta"]["text"]}"'
                if c == 0
                else f"{title} (IoU {iou(*intersection_union(pred, gt)):.2f})",
                fontsize=9,
            )
            ax.axis("off")
    fig.tight_layout()
    return fig


def _original_frame(store: SplitStore, row: int, video: dict) -> np.ndarray:
    """The stored frame resized back to the original size (what the metrics score against)."""
    frame = torch.from_numpy(np.array(store.frame_array[row])).permute(2, 0, 1)[None].float()
    frame = torch.nn.functional.interpolate(
        frame, size=(video["height"], video["width"]), mode="bilinear", align_corners=False
    )
    return frame[0].permute(1, 2, 0).clamp(0, 255).byte().numpy()


def evaluate_run(
    params: Params, run_dir: Path, run_id: str | None, *, tracking_enabled: bool = True
) -> dict[str, dict[str, float]]:
    """Evaluate a finished run once (cached in <run>/eval/); log metrics and artifacts to its MLflow run."""
    out = run_dir / "eval"
    if all((out / name).is_file() for name in EVAL_FILES):
        return json.loads((out / "metrics.json").read_text())
    device = pick_device(params.train.device)
    model = load_model(params, run_dir / "model.pt", device)
    vocab = load_vocab(params)
    metrics: dict[str, dict[str, float]] = {}
    strata: dict[str, dict[str, dict[str, float]]] = {}
    all_rows: list[dict[str, Any]] = []
    stored = ("val", "test", "test_shuffled", "jhmdb")  # test_shuffled right after the test split, whose maps it reuses
    splits = [s for s in stored if (params.processed / s.removesuffix("_shuffled") / "index.json").is_file()]
    jf = params.dataset_spec.metrics.davis
    for split in splits:
        if split != "test_shuffled":  # one split's maps at a time: 3.3 MB a frame at the full size
            features = Features(model)
        store = open_split(params.processed, split.removesuffix("_shuffled"))
        text_from = derangement(len(store.samples), params.train.seed) if split.endswith("_shuffled") else None
        ds = FrameDataset(store, vocab, params.data, text_from=text_from)
        if len(ds) == 0:
            continue
        rows = predict(model, ds, params, device, desc=f"eval {split}", features=features, boundary=jf)
        rows = [{**r, **pair_strata(store, r["sample"])} for r in rows]
        metrics[split] = summarize_rows(rows, jf)
        strata[split] = strata_metrics(rows, jf)
        all_rows.extend({"split": split, **r} for r in rows)
    bounds = {split: b for split, b in store_bounds(params).items() if split in metrics}
    with staged_dir(out) as tmp:  # metrics.json appears only together with everything else
        write_csv(tmp / "per_sample.csv", all_rows, SAMPLE_COLUMNS)
        write_json(tmp / "bounds.json", bounds)
        write_json(tmp / "strata.json", strata)
        test_store = open_split(params.processed, "test")
        fig = qualitative_figure(model, test_store, FrameDataset(test_store, vocab, params.data), params, device)
        fig.savefig(tmp / "qualitative.png", dpi=110)
        plt.close(fig)
        write_json(tmp / "metrics.json", metrics)
    if tracking_enabled and run_id:
        handle = tracking.run_handle(params, run_id)
        handle.log_metrics(mlflow_metrics({**flat_metrics(metrics), **flat_bounds(bounds), **flat_strata(strata)}))
        for name in EVAL_FILES:
            handle.log_artifact(out / name, "eval")
    return metrics


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    keys = ("P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "mAP", "overall_iou", "mean_iou")
    if any("J&F" in m for m in metrics.values()):
        keys += JF_KEYS
    keys += ("n",)
    lines = ["split          " + " ".join(f"{k:>11s}" for k in keys)]
    for split, m in metrics.items():
        lines.append(f"{split:14s} " + " ".join(f"{m[k]:11.1f}" if k != "n" else f"{int(m[k]):11d}" for k in keys))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("Evaluate the run of the given params (trained and reused by config hash)")
    p.add_argument("--out", type=Path, default=None, help=f"also copy {' / '.join(EVAL_FILES)} here")
    p.add_argument(
        "--export",
        action="store_true",
        help="also write the valid split's masks as a submission zip into <run>/export/ (ytvos / mevis); "
        "it fails, writing nothing, when a listed frame cannot get its mask",
    )
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="with --export: write the zip even when listed masks are missing (its last line says how many)",
    )
    args = p.parse_args(argv)
    if args.allow_incomplete and not args.export:
        raise UserError("--allow-incomplete goes with --export")
    params = params_from(args)
    if args.export:
        submission_spec(params)  # a2d has no split to submit: say so before any training
    result = train(params)  # reuses the finished run; trains only if it does not exist yet
    metrics = evaluate_run(params, result.run_dir, result.run_id)
    print(format_metrics(metrics))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name in EVAL_FILES:
            with atomic_path(args.out / name) as tmp:
                shutil.copyfile(result.run_dir / "eval" / name, tmp)
        if (params.processed / "test" / "index.json").is_file():  # the report's intervals of the bounds
            store, jf = open_split(params.processed, "test"), params.dataset_spec.metrics.davis
            rows = [{"split": "test", **r} for r in pair_bounds(store, params.eval.threshold, jf)]
            write_csv(args.out / BOUND_PAIRS, rows, BOUND_PAIR_COLUMNS)
    if "test" in metrics and "test_shuffled" in metrics:
        drop = metrics["test"]["mAP"] - metrics["test_shuffled"]["mAP"]
        print(
            f"shuffled-sentence control: test mAP {metrics['test']['mAP']:.1f} -> "
            f"{metrics['test_shuffled']['mAP']:.1f} (drop {drop:.1f})"
        )
    if args.export:  # last: an incomplete zip (--allow-incomplete) says so in the last line
        print(export_run(params, result.run_dir, allow_incomplete=args.allow_incomplete).summary())
    return 0


if __name__ == "__main__":
    run_main(main)
