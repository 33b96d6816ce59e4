"""Benchmark 8 - GPU: full-size training throughput, fp32 vs bf16 + channels_last (+ torch.compile),
and model FLOP utilisation (MFU) against the card's dense bf16 peak, per batch size.

What: for each --batch-sizes entry, the full-profile training step (ResNet-50, 320x320,
CCL+RHIC+LCF; the trainer's core.train.train_step on a synthetic batch) in each mode, the modes
interleaved: `fp32` (train.bf16=false, channels_last=false), `bf16+cl` (the trainer's CUDA
default: bf16 autocast + channels_last) and, with --compile, `bf16+cl+compile` (the model's
forward under torch.compile; the loss stays eager). Throughput = clips / median step time.
FLOPs per step are counted once by torch.utils.flop_counter.FlopCounterMode on the eager step
(matmul + convolution, forward + backward); MFU = FLOPs per step / step time / peak, the peak
being the card's dense bf16 tensor-core rate (--peak-tflops, else a table by device name:
H100 SXM / H200 989, H100 PCIe 756, A100 312, L40S 362, L4 121 TFLOP/s). Peak CUDA memory
per mode and batch: torch.cuda.max_memory_allocated over one step after a first one (cuDNN's
autotuning and compilation stay out of it), less what was allocated before that mode's model
and batch were built (its weights, batch, gradients, Adam state and activations). A batch that
does not fit is recorded as OOM and ends the curve.
Target: >= 30% MFU (bf16) at a batch size that fits; the batch/MFU curve is in the JSON.

Runs only on CUDA: without a CUDA device it prints "no CUDA device: skipped" and exits 0
(`--device cpu` runs the same code on the CPU as a smoke test; MFU is then omitted).

    python benchmarks/gpu_throughput.py                               # batch sizes 4 8 16 32
    python benchmarks/gpu_throughput.py --compile --batch-sizes 8 16 32 64
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cli, fixtures, output, timing  # noqa: E402
from core.config import Params  # noqa: E402
from core.io import write_json  # noqa: E402

TARGET = 0.30
HEADLINE = "best MFU, bf16 + channels_last, over the batch curve"
FULL = "CCL+RHIC+LCF"
GIB = 1024**3
# dense (no sparsity) bf16 tensor-core peaks, TFLOP/s; first match of the device name wins
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def peak_tflops(name: str, given: float | None) -> float | None:
    if given:
        return given
    return next((v for key, v in PEAK_TFLOPS if key.lower() in name.lower()), None)


def modes(params: Params, compile_: bool) -> dict[str, tuple[Params, bool]]:
    full = params.with_variant(FULL)
    out = {
        "fp32": (full.replace(**{"train.bf16": False, "train.channels_last": False}), False),
        "bf16+cl": (full.replace(**{"train.bf16": True, "train.channels_last": True}), False),
    }
    if compile_:
        out["bf16+cl+compile"] = (out["bf16+cl"][0], True)
    return out


def own_peak_gib(step: fixtures.TrainStep, device: torch.device, before: int) -> float | None:
    """Peak CUDA memory of a second step above `before` (the bytes allocated before this mode's model
    and batch existed), so the other modes' resident tensors are not counted; the first step's
    cuDNN autotuning (cudnn.benchmark tries algorithms with large workspaces) and compilation
    are not counted either. None off CUDA."""
    if device.type != "cuda":
        return None
    step()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / GIB


class Steps:
    """`n` training steps per call (fewer timer brackets per step)."""

    def __init__(self, step: fixtures.TrainStep, n: int):
        self.step, self.n = step, n

    def __call__(self) -> None:
        for _ in range(self.n):
            self.step()


def measure(ctx: cli.Context, b: int, n_steps: int, compile_: bool, objects: int) -> dict:
    """One batch size: every mode's step time (interleaved) and the step's FLOPs."""
    cands, eager, peaks = {}, None, {}
    for name, (mp, comp) in modes(ctx.params, compile_).items():
        before = torch.cuda.memory_allocated(ctx.device) if ctx.device.type == "cuda" else 0
        cl = ctx.device.type == "cuda" and mp.train.channels_last
        batch = fixtures.synthetic_batch(mp, b, objects, ctx.device, cl)
        model = fixtures.build_model(mp, ctx.device, cl)
        step = fixtures.TrainStep(mp, model, ctx.device, batch, net=torch.compile(model) if comp else None)
        peaks[name] = own_peak_gib(step, ctx.device, before)
        eager = eager or step
        cands[name] = Steps(step, n_steps)
    times = timing.interleaved(cands, ctx.args.reps, ctx.args.warmup, ctx.device)
    flops = timing.count_flops(eager)
    out = {"batch_size": b, "flops_per_step": flops, "modes": {}}
    for name, ts in times.items():
        per_step = timing.stats(ts)["median_s"] / n_steps
        out["modes"][name] = {
            "step_s": per_step,
            "clips_per_s": b / per_step,
            "achieved_tflops": flops / per_step / 1e12,
            "peak_cuda_gib": peaks[name],
            "times_s": ts,
        }
    return out


def main() -> int:
    p = cli.parser(__doc__, reps=5, warmup=1, synthetic=True, batch=False)
    p.set_defaults(profile="full")
    p.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[4, 8, 16, 32],
        help="batch sizes of the curve (default 4 8 16 32)",
    )
    p.add_argument("--steps", type=int, default=3, help="training steps per timed call (default 3)")
    p.add_argument("--compile", action="store_true", help="also time the model under torch.compile")
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="dense bf16 peak of the card (default: by device name)"
    )
    args = p.parse_args()
    if args.device == "auto" and not torch.cuda.is_available():
        print("no CUDA device: skipped (benchmark 8 measures the GPU; --device cpu runs it on the CPU as a smoke test)")
        write_json(
            output.result_path("gpu_throughput", args.profile),
            {
                "benchmark": "gpu_throughput",
                "skipped": "no CUDA device",
                "headlines": [output.headline(HEADLINE, None)],
            },
        )
        return 0
    ctx = cli.Context(args)
    name = ctx.machine()["device_name"]
    peak = peak_tflops(name, args.peak_tflops) if ctx.device.type == "cuda" else args.peak_tflops
    if peak is None:
        ctx.note(f"no dense bf16 peak known for {name!r}: MFU omitted (pass --peak-tflops)")
    curve, rows = [], []
    for b in sorted(args.batch_sizes):
        try:
            point = measure(ctx, b, args.steps, args.compile, args.objects)
        except torch.cuda.OutOfMemoryError:
            curve.append({"batch_size": b, "oom": True})
            rows.append([b, "all", "OOM", "", "", "", ""])
            break
        finally:
            gc.collect()
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
        for mode, m in point["modes"].items():
            m["mfu"] = m["achieved_tflops"] / peak if peak else None
            gib = "-" if m["peak_cuda_gib"] is None else m["peak_cuda_gib"]
            mfu = m["mfu"] if peak else "-"
            rows.append([b, mode, 1e3 * m["step_s"], m["clips_per_s"], m["achieved_tflops"], mfu, gib])
        curve.append(point)
    fitted = [c for c in curve if not c.get("oom")]
    best = max((c["modes"]["bf16+cl"].get("mfu") or 0.0 for c in fitted), default=0.0) if peak else None
    best_tp = max(
        ((m, c["modes"][m]["clips_per_s"], c["batch_size"]) for c in fitted for m in c["modes"]),
        key=lambda x: x[1],
        default=None,
    )
    extra = [f"best throughput: {best_tp[1]:.1f} clips/s ({best_tp[0]}, batch {best_tp[2]})"] if best_tp else []
    output.finish(
        "gpu_throughput",
        ctx,
        f"Benchmark 8: full-size training throughput and MFU ({FULL})",
        ["batch", "mode", "ms/step", "clips/s", "TFLOP/s", "MFU", "peak GiB"],
        rows,
        {
            "peak_tflops": peak,
            "steps_per_call": args.steps,
            "objects": args.objects,
            "curve": curve,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        },
        [
            output.headline(
                HEADLINE, best, TARGET, at_most=False, applies=ctx.device.type == "cuda" and peak is not None, unit=""
            )
        ],
        extra,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
