"""RHIC hard:easy ratio study (paper Fig. 6a): the full model over params.studies.rhic_ratios x seeds.

    python studies/rhic_ratio.py [--params params.yaml] [--set k=v ...] [--storage URL] [--n-jobs N]

One Optuna trial per (ratio, seed) sets loss.rhic_ratio and train.seed and trains (or reuses) the
full model (CCL + RHIC + LCF); the objective is validation mAP. Resumable and safe to run with
several workers or machines on one storage (see core/study.py). Writes
<outputs>/studies/rhic_ratio.{csv,png,svg,json}.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.study import cli  # noqa: E402

if __name__ == "__main__":
    cli("rhic_ratio")
