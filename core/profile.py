"""Print the params every stage reads: params.yaml with its profiles and the --set overrides applied.

python -m core.profile [--params params.yaml] [--set profiles=[paper,a2d]] [--set KEY=VALUE ...] [--out FILE]

params.yaml is never written: a profile is a layer named in its `profiles:` list (core.layers).
The `resolve` stage of dvc.yaml writes this to outputs/params.resolved.yaml, the file whose keys
the other stages list as params, so DVC reruns what a changed profile changes and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import yaml

from core.cli import params_from, parser, run_main
from core.config import Params
from core.io import write_text


def resolved_yaml(params: Params, source: str) -> str:
    """The validated params as YAML, after a comment naming what they were resolved from."""
    layers = "".join(f" + {name}" for name in params.profiles)
    head = f"# {source}{layers}, resolved by python -m core.profile (every key; edit params.yaml or a profile)\n"
    return head + yaml.safe_dump(params.to_dict(), sort_keys=False)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="write the resolved params here instead of printing them")
    args = p.parse_args(argv)
    text = resolved_yaml(params_from(args), args.params)
    if args.out:
        write_text(args.out, text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    run_main(main)
