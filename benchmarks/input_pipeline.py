"""Benchmark 4 - input pipeline: clips/s the DataLoader delivers / clips/s the training step consumes.

What: core.loop.clip_loader (the trainer's loader) over the processed store (train split,
augmentation on, train.num_workers workers as configured, a fresh loader per repetition so
worker start-up is paid) pulling --batches batches, against the training step (the trainer's
core.train.train_step, params.yaml's loss switches) on --batches batches taken from that
loader, interleaved; ratio = median(loader clips/s) / median(step clips/s). to_device (uint8 ->
normalised float) is timed as its own row. The store is generated + extracted once under
outputs/bench/ if missing (the full profile uses a small 320x320 set).
Target: >= 3x on the CPU default profile; reported for the full profile too.

    python benchmarks/input_pipeline.py                   # CPU default (~40 s, + ~40 s once to make the data)
    python benchmarks/input_pipeline.py --profile full    # 320x320 store, ResNet-50 step
                                                          # (batch 1, 2 batches on CPU, ~1 min)
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cli, fixtures, output, stores, timing  # noqa: E402
from core.checkpoint import load_vocab  # noqa: E402
from core.config import Params  # noqa: E402
from core.data.dataset import to_device  # noqa: E402
from core.data.vocab import Vocab  # noqa: E402
from core.loop import clip_loader  # noqa: E402
from core.runtime import Dist  # noqa: E402

TARGET = 3.0


class LoaderPull:
    """Pull n batches from fresh train loaders (a new one per epoch, as fit does); records clips."""

    def __init__(self, params: Params, vocab: Vocab, n: int):
        self.params, self.vocab, self.n, self.epoch = params, vocab, n, 0
        self.clips: list[int] = []

    def batches(self) -> list[dict[str, torch.Tensor]]:
        out: list[dict[str, torch.Tensor]] = []
        while len(out) < self.n:
            for batch in clip_loader(self.params, "train", self.vocab, True, self.epoch, Dist()):
                out.append(batch)
                if len(out) == self.n:
                    break
            self.epoch += 1
        return out

    def __call__(self) -> None:
        self.clips.append(sum(len(b["referent"]) for b in self.batches()))


class StepLoop:
    """The training step over a fixed list of on-device batches."""

    def __init__(self, step: fixtures.TrainStep, batches: list[dict[str, torch.Tensor]]):
        self.step, self.batches = step, batches
        self.clips = sum(len(b["referent"]) for b in batches)

    def __call__(self) -> None:
        for b in self.batches:
            self.step.batch = b
            self.step()


def main() -> int:
    p = cli.parser(__doc__, reps=5, cpu_full_reps=3)
    p.add_argument("--batches", type=int, default=None, help="batches per repetition (default 8; 2 for full on CPU)")
    args = p.parse_args()
    ctx = cli.Context(args)
    args.batches = args.batches or (2 if args.profile == "full" and ctx.device.type == "cpu" else 8)
    params = stores.ensure_store(stores.data_params(ctx, f"train.batch_size={ctx.batch_size}"))
    vocab = load_vocab(params)
    pull = LoaderPull(params, vocab, args.batches)
    raw = LoaderPull(params, vocab, args.batches).batches()
    on_device = [to_device(b, ctx.device, ctx.channels_last) for b in raw]
    steps = StepLoop(fixtures.make_step(params, ctx, on_device[0], vocab=vocab), on_device)
    cands = {
        "DataLoader": pull,
        "to_device": lambda: [to_device(b, ctx.device, ctx.channels_last) for b in raw],
        "train step": steps,
    }
    times = timing.interleaved(cands, args.reps, args.warmup, ctx.device)
    cps = {
        "DataLoader": statistics.median(c / t for c, t in zip(pull.clips[args.warmup :], times["DataLoader"])),
        "to_device": steps.clips / timing.stats(times["to_device"])["median_s"],
        "train step": steps.clips / timing.stats(times["train step"])["median_s"],
    }
    value = cps["DataLoader"] / cps["train step"]
    rows = [
        [n, 1e3 * timing.stats(times[n])["median_s"] / args.batches, cps[n], cps[n] / cps["train step"]] for n in cands
    ]
    ctx.note(
        f"store {params.processed}; {params.train.num_workers} loader workers (train.num_workers); "
        f"{len(clip_loader(params, 'train', vocab, True, 0, Dist()).dataset)} training clips"
    )
    output.finish(
        "input_pipeline",
        ctx,
        "Benchmark 4: input pipeline vs training step",
        ["stage", "ms / batch", "clips/s", "x step"],
        rows,
        {
            "batches": args.batches,
            "num_workers": params.train.num_workers,
            "clips_per_s": cps,
            "times_s": times,
            "loader_clips": pull.clips,
        },
        [
            output.headline(
                "input pipeline: DataLoader clips/s / training-step clips/s",
                value,
                TARGET,
                at_most=False,
                applies=args.profile == "default" and ctx.device.type == "cpu",
            )
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
