"""Build the report: read the result tables, lay out the pages, write PDF + figures + numbers, log to MLflow."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from core import tracking
from core.config import Params
from core.io import write_json
from reports import ablation_pages as A
from reports import pages as P
from reports.analysis import analyze
from reports.document import RC, close, save_pages, write_pdf
from reports.inputs import load_inputs
from reports.tables import Numbers


@dataclass(frozen=True)
class ReportResult:
    pdf: Path
    figures: list[Path]  # every page as PNG and SVG
    numbers: Path  # report_numbers.json
    run_id: str | None  # the MLflow parent run of the report (None when not tracked)


def build_report(params: Params, *, track: bool = True) -> ReportResult:
    """<outputs>/report/report.pdf (+ a PNG and SVG per page and report_numbers.json); with `track`,
    all of them are logged to the MLflow parent run 'report' (keyed by the data fingerprint)."""
    inp = load_inputs(params)
    images = P.qualitative_images(params, inp)  # checked before any drawing
    an = analyze(params, inp)
    out = params.outputs / "report"
    num = Numbers()
    builders = [
        lambda: A.table3_page(params, inp, an, num),
        lambda: A.verdicts_page(params, inp, an, num),
        lambda: A.strata_page(params, inp, an, num),
        *([lambda: A.strata_page(params, inp, an, num, grounding=True)] if "grounding" in an.strata.metrics else []),
        *([lambda: A.sensitivity_page(params, inp, an, num)] if an.readings is not None else []),
        lambda: A.fig6_page(params, inp, an, num),
        lambda: A.fig6_tests_page(params, inp, an, num),
        lambda: P.main_results_page(params, inp, num),
        lambda: P.training_page(params, inp, an, num),
        *([lambda: A.calibration_page(params, inp, an, num)] if an.calibration is not None else []),
        lambda: P.qualitative_page(params, inp, num, images),
    ]
    with plt.rc_context(RC), sns.axes_style("whitegrid", rc=RC):
        pages = []
        try:
            for build in builders:
                pages.append(build())
        except BaseException:
            close(pages)
            raise
        pages.insert(0, P.title_page(params, inp, num, [p.title for p in pages]))
        try:
            footer = f"CVLS suite · {params.data.source} data · fingerprint {inp.fingerprint}"
            for i, page in enumerate(pages, start=1):
                page.footer(f"{footer} · page {i}/{len(pages)}")
            figures = save_pages(pages, out)
            numbers = out / "report_numbers.json"
            write_json(numbers, num.items)
            pdf = write_pdf(
                pages,
                out / "report.pdf",
                {
                    "Title": "CVLS ablation suite report",
                    "Subject": f"{params.data.source} data, fingerprint {inp.fingerprint}",
                    "Creator": "reports/build.py",
                    "CreationDate": dt.datetime.now(dt.timezone.utc),
                },
            )
        finally:
            close(pages)
    run_id = log_report(params, inp.fingerprint, [pdf, numbers, *figures]) if track else None
    return ReportResult(pdf, figures, numbers, run_id)


def log_report(params: Params, fingerprint: str, files: list[Path]) -> str:
    """Log the files under 'report/' in the report's MLflow parent run (found again by its key)."""
    run_id = tracking.start_parent_run(params, name="report", tags={tracking.TAG_PARENT_KEY: "report:" + fingerprint})
    with tracking.run_span(params, run_id):  # RUNNING while its files upload
        handle = tracking.run_handle(params, run_id)
        for path in files:
            handle.log_artifact(path, "report")
    return run_id
