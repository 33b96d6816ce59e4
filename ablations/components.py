"""Component ablation (paper Table 3): every (variant, seed) of params.ablation, one queue.

    python ablations/components.py [--params params.yaml] [--set key=value ...] [--storage URL] [--n-jobs N]

Each row trains exactly once (on this machine or another on the same --storage), at the main
run's budget; writes <outputs>/ablation/{results,per_sample,histories}.csv and summary.json.
The body is core/ablation.py.
"""

from __future__ import annotations

from core.ablation import main
from core.cli import run_main

if __name__ == "__main__":
    run_main(main)
