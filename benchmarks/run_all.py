"""Run the benchmarks 1-7, 9 and 10 (and 8 when a CUDA device is present) in sequence and write one summary.

Each benchmark runs as its own process (own threads, own memory high-water mark) with the
shared options given here; afterwards every headline claim (value, target, met) is collected
from the JSON results into outputs/benchmarks/summary.json and printed as one table. The
exit status is 1 only if a benchmark crashed; unmet targets are reported, not failed.

    python benchmarks/run_all.py                          # CPU default profile (~17 min on 2 cores)
    python benchmarks/run_all.py --profiles default full  # and the full-size profile (~15 min on CPU)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cli, output  # noqa: E402
from core.io import write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "method_overhead",
    "backbone_floor",
    "object_scaling",
    "input_pipeline",
    "extraction",
    "tracking_overhead",
    "memory",
    "evaluation",
    "learning",
)
GPU_BENCHMARK = "gpu_throughput"
DEFAULT_ONLY = "learning"  # minutes of training per setting: the default profile only
HEADERS = ["benchmark", "profile", "claim", "value", "target", "verdict"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profiles", nargs="+", choices=tuple(cli.PROFILES), default=["default"])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--params", default=str(cli.ROOT / "params.yaml"))
    p.add_argument(
        "--only", nargs="+", choices=(*BENCHMARKS, GPU_BENCHMARK), default=None, help="run these benchmarks only"
    )
    args = p.parse_args()
    cuda = args.device != "cpu" and torch.cuda.is_available()
    names = list(args.only or [*BENCHMARKS, *((GPU_BENCHMARK,) if cuda else ())])
    shared = [
        "--device",
        args.device,
        "--params",
        args.params,
        *(["--threads", str(args.threads)] if args.threads else []),
    ]
    jobs = [
        (n, prof)
        for prof in args.profiles
        for n in names
        if not (n == GPU_BENCHMARK and prof != args.profiles[0]) and not (n == DEFAULT_ONLY and prof != "default")
    ]
    runs, rows = [], []
    for name, profile in jobs:
        prof = "full" if name == GPU_BENCHMARK else profile  # benchmark 8 is a full-size measurement
        print(f"\n==== {name} --profile {prof}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py"), "--profile", prof, *shared], cwd=cli.ROOT
        ).returncode
        runs.append({"benchmark": name, "profile": prof, "rc": rc, "wall_s": time.perf_counter() - t0})
        if rc != 0:
            rows.append([name, prof, "CRASHED", "", "", f"exit {rc}"])
            continue
        result = output.load_json(output.result_path(name, prof))
        for h in result.get("headlines", []):
            verdict = "" if h["met"] is None else ("met" if h["met"] else "NOT met")
            rows.append(
                [
                    name,
                    prof,
                    h["label"],
                    output.value_text(h),
                    output.bound_text(h),
                    verdict or ("-" if h["target"] is None else "not judged"),
                ]
            )
            runs[-1].setdefault("headlines", []).append(h)
    path = output.RESULTS / "summary.json"
    write_json(
        path,
        {"profiles": args.profiles, "device": args.device, "runs": runs, "table": {"headers": HEADERS, "rows": rows}},
    )
    print("\n" + output.table(HEADERS, rows))
    print(f"\nJSON: {path}")
    return 1 if any(r["rc"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
