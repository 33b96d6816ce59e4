"""The generate stage's command line: `python -m core.data.synthetic [--params P] [--set k=v]`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

from core.cli import params_from, parser, run_main
from core.data.synthetic.write import generate


def format_summary(summary: dict, a2d: Path, jhmdb: Path | None, seconds: float) -> str:
    v, s, j = summary["videos"], summary["sentences"], summary["jhmdb"]
    return "\n".join(
        [
            f"synthetic A2D  -> {a2d}: {v['train']} train / {v['test']} test videos, "
            f"{s['train']} / {s['test']} sentences, {summary['mean_actors_per_video']:.2f} actors per video, "
            f"1 missed video ({summary['missed_videos'][0]})",
            f"  same-class distractor share {summary['same_class_fraction']:.2f} "
            f"(target {summary['distractor_fraction']:.2f}); "
            f"disambiguating attributes {summary['disambiguating_attribute_types']}",
            f"synthetic J-HMDB -> {jhmdb}: {j['videos']} videos, {j['sentences']} sentences, "
            f"{j['videos_with_unmasked_tail']} with unmasked trailing frames",
            f"seed {summary['seed']}, {seconds:.1f} s",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("Generate the synthetic dataset in the A2D Sentences and J-HMDB Sentences layouts.")
    p.prog = "python -m core.data.synthetic"  # not argv[0], which is this package's __main__.py
    args = p.parse_args(argv)
    params = params_from(args)
    start = time.perf_counter()
    summary = generate(params)
    if not summary["generated"]:
        print(f"data.source is {params.data.source!r}: nothing generated (the real dataset is read in place)")
        return 0
    seconds = time.perf_counter() - start
    if "twin" in summary:
        twin = summary["twin"]
        print(
            f"synthetic {params.data.dataset} -> {params.raw_dataset}: videos {twin['videos']}, "
            f"expressions {twin['expressions']}, seed {summary['seed']}, {seconds:.1f} s"
        )
        return 0
    print(format_summary(summary, params.raw_dataset, params.raw_root("jhmdb"), seconds))
    return 0


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
