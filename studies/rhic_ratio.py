"""RHIC hard:easy ratio study (paper Fig. 6a): the full model over params.studies.rhic_ratios x seeds.

    python studies/rhic_ratio.py [--params params.yaml] [--set k=v ...] [--storage URL] [--n-jobs N]

One Optuna trial per (ratio, seed) sets loss.rhic_ratio and train.seed and trains (or reuses) the
full model (CCL + RHIC + LCF); the objective is validation mAP. Resumable and safe to run with
several workers or machines on one storage (see core/study/). Writes
<outputs>/studies/rhic_ratio.{csv,png,svg,json}.
"""

from __future__ import annotations

from core.study import cli

if __name__ == "__main__":
    cli("rhic_ratio")
