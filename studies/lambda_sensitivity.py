"""Loss-weight lambda sensitivity study (Eq. 4): the full model over params.studies.lambdas x seeds.

    python studies/lambda_sensitivity.py [--params params.yaml] [--set k=v ...] [--storage URL] [--n-jobs N]

One Optuna trial per (lambda, seed) sets loss.lambda_seg and train.seed and trains (or reuses) the
full model (CCL + RHIC + LCF); the objective is validation mAP. Resumable and safe to run with
several workers or machines on one storage (see core/study/). Writes
<outputs>/studies/lambda_sensitivity.{csv,png,svg,json}.
"""

from __future__ import annotations

from core.study import cli

if __name__ == "__main__":
    cli("lambda_sensitivity")
