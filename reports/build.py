"""The PDF report of the suite: python reports/build.py [--params params.yaml] [--set key=value ...]

Reads the result tables under params.outputs (never the model) and writes
<outputs>/report/report.pdf, a PNG and SVG of every page and report_numbers.json.
"""

from __future__ import annotations

from typing import Sequence

from core.cli import params_from, parser, run_main
from reports.report import build_report


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("Build the PDF report from the result tables under params.outputs")
    p.add_argument("--no-mlflow", dest="track", action="store_false", help="do not log the report to MLflow")
    args = p.parse_args(argv)
    result = build_report(params_from(args), track=args.track)
    print(f"report: {result.pdf}")
    if result.run_id:
        print(f"logged to MLflow run {result.run_id}")
    return 0


if __name__ == "__main__":
    run_main(main)
