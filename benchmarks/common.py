"""Shared plumbing of the benchmarks: profiles, interleaved timing, synthetic batches, the
training step exactly as core/train.py runs it, the benchmark data stores, JSON + table output.

Timing rule (every claim in benchmarks/): the candidates of one comparison run in the same
process, interleaved after a warm-up (A, B, C, then B, C, A, then C, A, B, ...: each candidate
takes every position equally often), and a ratio is median(A) / median(B) of those repetitions.
On CUDA every timed call is bracketed by torch.cuda.synchronize().

Profiles: `default` = params.yaml as is; `full` = the paper's size (ResNet-50, 320x320, C=256)
via `--set model.backbone=resnet50 data.input_size=320 model.channels=256`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import Params, load_params
from core.data.dataset import to_device
from core.data.vocab import Vocab
from core.io import write_json
from core.model import CVLS
from core.runtime import cpu_cores, pick_device
from core.train import build_model as core_build_model
from core.train import make_optimizer, train_step

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "outputs" / "benchmarks"  # the JSON results
BENCH_DATA = ROOT / "outputs" / "bench"  # the benchmarks' own data stores and scratch folders
PROFILES: dict[str, tuple[str, ...]] = {
    "default": (),
    "full": ("model.backbone=resnet50", "data.input_size=320", "model.channels=256"),
}
# the data store a profile's loader/extraction/training benchmarks read: the default one is the
# default synthetic set; the full-size one is a small set rendered at A2D-like resolution, with a
# one-video validation split (validation of a full-size run on CPU would dominate short runs)
DATA_OVERRIDES: dict[str, tuple[str, ...]] = {
    "default": (),
    "full": ("data.synthetic.train_videos=24", "data.synthetic.test_videos=4", "data.synthetic.jhmdb_videos=2",
             "data.synthetic.height=240", "data.synthetic.width=320", "data.val_fraction=0.05"),
}
CPU_FULL_BATCH = 1  # ResNet-50 at 320 px on a few CPU cores: one clip per step keeps runs short
DEFAULT_OBJECTS = 4
VARIANT_ORDER = ("Baseline", "CCL", "CCL+RHIC", "CCL+LCF", "CCL+RHIC+LCF")


# ------------------------------------------------------------------------------ command line
def parser(doc: str | None, reps: int, warmup: int = 1, cpu_full_reps: int | None = None,
           synthetic: bool = False, batch: bool = True) -> argparse.ArgumentParser:
    """The options every benchmark takes; `doc` (the script's docstring) is its --help text.
    `cpu_full_reps`: fewer default repetitions for the full profile on CPU (slow steps);
    `synthetic`: the benchmark times synthetic batches (adds --objects); `batch`: it has a batch size."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=tuple(PROFILES), default="default", help="default = params.yaml; full = ResNet-50, 320x320")
    p.add_argument("--reps", type=int, default=None,
                   help=f"timed repetitions per candidate (default {reps}" + (f"; {cpu_full_reps} for full on CPU)" if cpu_full_reps else ")"))
    p.set_defaults(default_reps=(reps, cpu_full_reps or reps))
    p.add_argument("--warmup", type=int, default=warmup, help=f"untimed repetitions per candidate first (default {warmup})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto = cuda when available")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the cores this process may use)")
    if batch:
        p.add_argument("--batch-size", type=int, default=None,
                       help=f"clips per step (default: train.batch_size; {CPU_FULL_BATCH} for the full profile on CPU)")
    p.add_argument("--params", default=str(ROOT / "params.yaml"), help="params file (default: the project's params.yaml)")
    if synthetic:
        p.add_argument("--objects", type=int, default=DEFAULT_OBJECTS,
                       help=f"instances per clip in the synthetic batch (default {DEFAULT_OBJECTS} = data.synthetic.actors_max)")
    return p


class Context:
    """What one benchmark run is: its args, validated params, device and thread count."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.threads = args.threads or cpu_cores()
        torch.set_num_threads(self.threads)
        self.params = load_params(args.params, PROFILES[args.profile])
        self.device = pick_device(args.device)
        self.notes: list[str] = []
        full_cpu = args.profile == "full" and self.device.type == "cpu"
        if args.reps is None:
            args.reps = args.default_reps[1] if full_cpu else args.default_reps[0]
        given = getattr(args, "batch_size", None)
        self.batch_size: int | None = (given or self.params.train.batch_size) if hasattr(args, "batch_size") else None
        if hasattr(args, "batch_size") and given is None and full_cpu:
            self.batch_size = CPU_FULL_BATCH
            self.note(f"full profile on CPU: batch size {CPU_FULL_BATCH} (not train.batch_size={self.params.train.batch_size}) "
                      "to keep the run short; pass --batch-size to change")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def channels_last(self) -> bool:
        """As the trainer: channels_last only on CUDA with train.channels_last."""
        return self.device.type == "cuda" and self.params.train.channels_last

    def machine(self) -> dict[str, Any]:
        info = {
            "cpu_count": os.cpu_count(), "cpu_affinity": cpu_cores(), "torch_threads": self.threads,
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_name(),
        }
        if self.device.type == "cuda":
            info["cuda"] = torch.version.cuda
        return info

    def header(self) -> dict[str, Any]:
        a = self.args
        return {"profile": a.profile, "profile_overrides": list(PROFILES[a.profile]), "reps": a.reps, "warmup": a.warmup,
                "batch_size": self.batch_size, "machine": self.machine(), "argv": sys.argv[1:]}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------------------------------------ timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved(candidates: dict[str, Callable[[], Any]], reps: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each timed call, candidates interleaved and rotated round by round."""
    names = list(candidates)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + reps):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            t = timed(candidates[name], device)
            if r >= warmup:
                times[name].append(t)
    return times


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call (forward + backward when fn runs both), by torch.utils.flop_counter:
    matmuls and convolutions (2 per multiply-add); elementwise work is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def stats(times: Sequence[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    return statistics.median(times[num]) / statistics.median(times[den])


def headline(label: str, value: float | None, target: float | None = None, at_most: bool = True,
             applies: bool = True, unit: str = "x") -> dict[str, Any]:
    """A benchmark's claim: `value` against `target` (<= when at_most, else >=); `applies`
    false when the target is set for another profile/device (then it is shown, not judged)."""
    met = None
    if value is not None and target is not None and applies:
        met = bool(value <= target) if at_most else bool(value >= target)
    return {"label": label, "value": value, "unit": unit, "target": target, "at_most": at_most, "applies": applies, "met": met}


def headline_text(h: dict[str, Any]) -> str:
    if h["value"] is None:
        return f"{h['label']}: skipped"
    text = f"{h['label']}: {h['value']:.4g}{h['unit']}"
    if h["target"] is not None:
        bound = f"{'<=' if h['at_most'] else '>='} {h['target']:g}{h['unit']}"
        text += f"   target {bound}: " + (("met" if h["met"] else "NOT met") if h["applies"] else "not judged here (set for another profile or device)")
    return text


# ------------------------------------------------------------------------------ output
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(list(headers)), "  ".join("-" * w for w in widths), *(line(r) for r in cells)])


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def result_path(name: str, profile: str) -> Path:
    return RESULTS / (f"{name}.json" if profile == "default" else f"{name}-{profile}.json")


def finish(name: str, ctx: Context, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]],
           result: dict[str, Any], headlines: Sequence[dict[str, Any]], extra_lines: Sequence[str] = (), timing: bool = True) -> Path:
    """Print the table, the headline claims and the notes; write outputs/benchmarks/<name>[-<profile>].json."""
    path = result_path(name, ctx.args.profile)
    write_json(path, {"benchmark": name, "title": title, **ctx.header(), "notes": ctx.notes, "headlines": list(headlines),
                      **result, "table": {"headers": list(headers), "rows": [[jsonable(c) for c in r] for r in rows]}})
    m = ctx.machine()
    batch = f"batch {ctx.batch_size}, " if ctx.batch_size else ""
    reps = f"{ctx.args.reps} reps after {ctx.args.warmup} warm-up (interleaved), medians" if timing else f"{ctx.args.reps} run(s)"
    print(f"\n{title}\nprofile {ctx.args.profile}, device {m['device']} ({m['device_name']}), {ctx.threads} torch threads, {batch}{reps}\n")
    print(table(headers, rows))
    print()
    for line in [*extra_lines, *(headline_text(h) for h in headlines)]:
        print(line)
    for n in ctx.notes:
        print(f"note: {n}")
    print(f"\nJSON: {path}")
    return path


def jsonable(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


# ------------------------------------------------------------------------------ model + batch
def vocab_size(params: Params) -> int:
    """Words incl. <unk> (len(vocab.words) + 1) of a synthetic batch: the configured upper bound
    data.vocab_size, which the real A2D vocabulary reaches."""
    return params.data.vocab_size


def build_model(params: Params, device: torch.device, channels_last: bool, seed: int = 0, vocab: Vocab | None = None) -> CVLS:
    """core.train.build_model (random backbone init: start weights change no timing) + the trainer's
    .to(device) / channels_last, from a fixed seed; `vocab` None = a data.vocab_size vocabulary."""
    torch.manual_seed(seed)
    vocab = vocab or Vocab(tuple(f"w{i}" for i in range(vocab_size(params) - 1)))
    model = core_build_model(params, vocab, init=False).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def synthetic_batch(params: Params, batch_size: int, objects: int, device: torch.device, channels_last: bool,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """A collated batch (core.data.dataset.collate_clips' uint8 layout) with `objects` instances
    per clip (ellipses at random places/sizes), then core.data.dataset.to_device as the trainer."""
    g = np.random.default_rng(seed)
    b, t, k, s = batch_size, params.data.clip_frames, objects, params.data.input_size
    frames = g.integers(0, 256, (b, t, 3, s, s), dtype=np.uint8)
    yy, xx = np.mgrid[0:s, 0:s] / s
    cy, cx = g.uniform(0.15, 0.85, (2, b, 1, k, 1, 1))
    ry, rx = g.uniform(0.05, 0.25, (2, b, 1, k, 1, 1))
    drift = np.arange(t).reshape(1, t, 1, 1, 1) * g.uniform(-0.03, 0.03, (b, 1, k, 1, 1))  # objects move between frames
    masks = (((yy - cy) / ry) ** 2 + ((xx - cx - drift) / rx) ** 2 <= 1.0).astype(np.uint8)
    lengths = g.integers(3, params.data.max_tokens + 1, b)
    tokens = np.zeros((b, int(lengths.max())), np.int64)
    for i, n in enumerate(lengths):
        tokens[i, :n] = g.integers(1, vocab_size(params) + 1, n)
    masks_t = torch.from_numpy(masks)
    batch = {
        "frames": torch.from_numpy(frames), "masks": masks_t, "present": masks_t.flatten(3).amax(-1) > 0,
        "tokens": torch.from_numpy(tokens), "lengths": torch.from_numpy(lengths.astype(np.int64)),
        "referent": torch.from_numpy(g.integers(0, k, b)), "frame_valid": torch.ones(b, t, dtype=torch.bool),
    }
    return to_device(batch, device, channels_last)


class TrainStep:
    """One optimisation step exactly as core.train.fit runs it per (already on-device) batch:
    forward under core.runtime.autocast, cvls_loss, zero_grad, backward, [grad clip], Adam step."""

    def __init__(self, params: Params, model: torch.nn.Module, device: torch.device, batch: dict[str, torch.Tensor],
                 net: Callable[..., Any] | None = None):
        self.params, self.model, self.device, self.batch = params, model, device, batch
        self.net = model if net is None else net  # e.g. a torch.compile wrapper of `model`
        self.opt = make_optimizer(model, params.train.lr, params.train.weight_decay)

    def __call__(self) -> torch.Tensor:
        loss, _ = train_step(self.net, self.model, self.opt, self.batch, self.params, self.device)
        return loss.detach()


def make_step(params: Params, ctx: Context, batch: dict[str, torch.Tensor], seed: int = 0, vocab: Vocab | None = None) -> TrainStep:
    return TrainStep(params, build_model(params, ctx.device, ctx.channels_last, seed, vocab), ctx.device, batch)


# ------------------------------------------------------------------------------ data stores
def data_overrides(ctx: Context, *extra: str) -> list[str]:
    """The --set list of the profile pointed at its benchmark data folder outputs/bench/data-<profile>-<hash>
    (never the pipeline's outputs/, which another run may be using), with model.init=scratch:
    the start weights of the backbone change no timing, and the pretext stage is not benchmarked."""
    base = [*PROFILES[ctx.args.profile], *DATA_OVERRIDES[ctx.args.profile]]
    folder = BENCH_DATA / f"data-{ctx.args.profile}-{load_params(ctx.args.params, base).digest(('data',))[:8]}"
    return [*base, f"paths.outputs={folder}", "model.init=scratch", *extra]


def data_params(ctx: Context, *extra: str) -> Params:
    return load_params(ctx.args.params, data_overrides(ctx, *extra))


def ensure_raw(params: Params) -> Params:
    """Generate the synthetic raw dataset under params.outputs when missing (the generate stage)."""
    from core.data.synthetic import generate

    if params.data.source == "synthetic" and not params.raw_a2d.is_dir():
        if params.outputs.parent == BENCH_DATA:  # drop this profile's data of an older params.yaml
            for stale in BENCH_DATA.glob(params.outputs.name.rsplit("-", 1)[0] + "-*"):
                shutil.rmtree(stale)
        print(f"benchmark data: generating the synthetic set into {params.outputs} (once) ...", flush=True)
        with quiet():
            generate(params)
    return params


def ensure_store(params: Params) -> Params:
    """The raw dataset and its processed store under params.outputs, made when missing (generate + extract)."""
    from core.data.extract import extract

    if not (params.processed / "summary.json").is_file():
        ensure_raw(params)
        print(f"benchmark data: extracting into {params.processed} (once) ...", flush=True)
        with quiet():
            extract(params)
    return params


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence stderr (progress bars, log lines) of the pipeline code a benchmark drives."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        yield


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def load_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
