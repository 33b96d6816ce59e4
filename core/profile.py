"""Merge a params profile (a partial params file) into params.yaml, validated.

python -m core.profile profiles/tiny.yaml [--params params.yaml]
"""

from __future__ import annotations

import argparse
from typing import Sequence

from core.cli import run_main
from core.config import merge_profile


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("profile")
    p.add_argument("--params", default="params.yaml")
    args = p.parse_args(argv)
    merge_profile(args.params, args.profile, args.params)
    print(f"{args.params}: merged {args.profile}")
    return 0


if __name__ == "__main__":
    run_main(main)
