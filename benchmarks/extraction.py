"""Benchmark 5 - extraction: frames/s of the extraction stage / frames/s of a bare PyAV decode.

What: core.data.extract.extract (the whole stage: read the A2D layout incl. h5 masks, decode,
resize, cache chunks, assemble and fingerprint the store) from an empty cache, against a bare
PyAV loop over the same mp4 files (av.open, decode every frame, nothing else), interleaved;
ratio = t(bare decode) / t(extraction), i.e. frames/s of both counted over the same frames
(all frames of the files). For reference: bare loops that also convert every frame to RGB,
with `frame.to_ndarray(format=...)` (a new swscale context per frame) and with one reused
`VideoReformatter` per file (what the stage does), and the stage on `--workers` processes
(data.extract_workers; the headline uses params.yaml's value). The stage reads the benchmark's generated raw set
(outputs/bench/, made once if missing) with J-HMDB left out so both sides read the same files.
Target: >= 0.8.

    python benchmarks/extraction.py                    # the default synthetic set (~1 min on 2 cores)
    python benchmarks/extraction.py --profile full     # a small 240x320 set extracted at 320x320 (~20 s)
"""

from __future__ import annotations

import sys
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cli, output, stores, timing  # noqa: E402
from core.config import load_params  # noqa: E402
from core.data.a2d import read_a2d  # noqa: E402
from core.data.extract import extract  # noqa: E402
from core.data.types import SkipLedger  # noqa: E402

TARGET = 0.8


def bare_decode(paths: list[Path], rgb: str | None) -> int:
    """Decode every frame of every file (rgb: None, 'to_ndarray' or 'reformatter'); the frame count."""
    n = 0
    for path in paths:
        with av.open(str(path)) as container:
            reformatter = av.video.reformatter.VideoReformatter()
            for frame in container.decode(video=0):
                if rgb == "to_ndarray":
                    frame.to_ndarray(format="rgb24")
                elif rgb == "reformatter":
                    reformatter.reformat(frame, format="rgb24").to_ndarray()
                n += 1
    return n


def main() -> int:
    ap = cli.parser(__doc__, reps=3, warmup=1, batch=False)
    ap.add_argument("--workers", type=int, default=2, help="data.extract_workers of the extra stage candidate")
    args = ap.parse_args()
    ctx = cli.Context(args)
    data = stores.ensure_raw(stores.data_params(ctx))
    work = data.outputs.parent / f"extract-{args.profile}"
    # the same code path as the pipeline's stage, reading the generated A2D files in place (as real data)
    params = load_params(
        args.params,
        stores.data_overrides(
            ctx,
            "data.source=real",
            f"data.a2d_root={data.raw_root('a2d')}",
            "data.jhmdb_root=null",
            f"paths.outputs={work}",
        ),
    )
    allowed = frozenset(params.data.allow_skip) | {"missing_video"}
    files = [v.source for v in read_a2d(params.raw_root("a2d"), SkipLedger(allowed=allowed))]
    frames = bare_decode(files, rgb=None)
    summaries: list[dict] = []

    def stage(p) -> None:
        stores.fresh_dir(work)
        with stores.quiet():
            summaries.append(extract(p))

    parallel = params.replace(**{"data.extract_workers": args.workers})
    cands = {
        "extraction stage": lambda: stage(params),
        f"extraction stage, {args.workers} workers": lambda: stage(parallel),
        "bare PyAV decode": lambda: bare_decode(files, None),
        "bare decode + RGB (to_ndarray)": lambda: bare_decode(files, "to_ndarray"),
        "bare decode + RGB (reformatter)": lambda: bare_decode(files, "reformatter"),
    }
    times = timing.interleaved(cands, args.reps, args.warmup, ctx.device)
    med = {n: timing.stats(t)["median_s"] for n, t in times.items()}
    rows = [[n, med[n], frames / med[n], med["bare PyAV decode"] / med[n]] for n in cands]
    stored = sum(c["frames"] for c in summaries[-1]["splits"].values())
    ctx.note(
        f"{len(files)} mp4 files, {frames} frames in them; the stage stores {stored} frames resized to "
        f"{params.data.input_size}x{params.data.input_size} (it decodes each file up to its last annotated frame); "
        f"'extraction stage' runs with data.extract_workers={params.data.extract_workers}"
    )
    value = med["bare PyAV decode"] / med["extraction stage"]
    output.finish(
        "extraction",
        ctx,
        "Benchmark 5: extraction stage vs bare PyAV decode",
        ["candidate", "median s", "frames/s", "x bare decode"],
        rows,
        {"files": len(files), "frames": frames, "stored_frames": stored, "times_s": times},
        [output.headline("extraction frames/s / bare PyAV decode frames/s", value, TARGET, at_most=False)],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
