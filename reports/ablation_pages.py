"""The report's pages on the ablation and its inference: Table 3, the verdicts, the strata, the
readings, Fig. 6 and the calibration. They narrate reports.analysis; the tables render it."""

from __future__ import annotations

from core.config import Params
from reports import figures, paper, tables, verdicts
from reports.analysis import TABLE3_KINDS, Analysis
from reports.document import SMALL, Page
from reports.inputs import ReportInputs
from reports.protocol import protocol, split_name
from reports.strata import COMMITTED, GROUNDING
from reports.sweeps import SweepAnalysis
from reports.tables import NA, Numbers
from reports.variants import full

TITLES = {
    "table3": "Table 3 reproduced: component ablation",
    "verdicts": "Verdicts: each step and each row against the Baseline",
    "strata": "Table 3 by stratum: distractors and attributes",
    "grounding": "Grounding by stratum: picking the referent among its class",
    "sensitivity": "Reconstruction sensitivity: Table 3 under each [open] reading",
    "fig6": "Fig. 6: RHIC ratio and λ sensitivity",
    "fig6_tests": "Fig. 6: each point against the default",
    "calibration": "Calibration: how often these tests flag a null difference",
}
BOTH = (
    "counting both things a rerun would change: the training seeds (the seed-to-seed variance pooled over the "
    "table's rows, which share their seeds) and the test set, resampled by video (a video's sentences and frames "
    "are not independent)"
)
VERDICTS = (
    "How to read a verdict. Each comparison is a difference b − a in percentage points with its {conf:.0%} interval "
    "(seeds and test videos, paired: the rows share both). The primary family ({family} on {metric}) is read with "
    "Holm's adjustment, so the chance of any false 'helps' or 'hurts' among them is at most α = {alpha:g}; every "
    "other comparison of the report is exploratory and carries a Benjamini-Hochberg q (the expected share of false "
    "findings among those flagged). helps / hurts: the adjusted p (or q) is below α, in the direction of Δ. no "
    "evidence: it is not; d is the true difference the test would have found with probability {power:.0%} at the "
    "level it is read at (α / m = {level:.3g} in the primary family, α otherwise), so a 'no evidence' with |Δ| < d "
    "says a true difference of d or more is unlikely to have gone unseen, and the interval bounds what the data "
    "rule out. The paper gives no interval: its steps are single numbers."
)


def table3_page(params: Params, inp: ReportInputs, an: Analysis, num: Numbers) -> Page:
    conf, proto = params.report.confidence, protocol(params)
    page = Page("table3", TITLES["table3"])
    ours = f"Ours: mean ± the half-width of the {conf:.0%} interval, {BOTH}."
    if proto.cvls_paper:
        intro = (
            f"Test split (A2D-format), in %. mAP is 0.5:0.95. {ours} Paper: Table 3 of the paper, measured on real "
            f"A2D Sentences; the plain text lost the check marks, so the rows follow the {paper.TABLE3_ROW_ORDER_NOTE}."
        )
        heading = f"(a) mAP 0.5:0.95, Overall IoU, Mean IoU — {paper.TABLE3_ROW_ORDER_NOTE}"
    else:
        intro = (
            f"Test split: the {split_name(params)}, in %. J: region similarity, F: boundary F-measure, J&F = (J + F) / "
            f"2, DAVIS protocol (per expression over its frames, then over expressions). {ours} {proto.context_note}."
        )
        heading = f"(a) {', '.join(proto.label(m) for m in proto.table3)} (DAVIS protocol)"
    page.text(intro, size=SMALL)
    page.text(heading, weight="bold", size=10)
    bounds = (inp.bounds or {}).get("test") or {}
    page.table(tables.table3(an, inp.variants, full(inp.results), num, bounds, proto))
    page.text(
        "References, on the same test videos: the language-blind predictor knows the referent's class but not the "
        "sentence (one of the frame's instances of that class, at random; computed exactly, so its interval counts "
        "the test videos alone); the oracle ceiling scores the referent's ground-truth mask at the decoder's "
        "resolution."
        + (
            ""
            if an.references
            else " No per-pair bounds (eval/bound_pairs.csv, written by `dvc repro evaluate`): "
            "the references have no interval and no row is compared with them."
        ),
        size=SMALL,
    )
    letters = iter("bc")
    if an.of("blind") and "oracle" in bounds:
        page.text(f"({next(letters)}) Each row against the language-blind reference", weight="bold", size=10)
        page.table(tables.headroom(an, bounds, num, proto))
        page.text(
            "Headroom closed: (row − blind) / (oracle − blind), printed only where the row is above the reference "
            f"(q < α); {NA} below it or not told apart from it, where a share of the gap to the ceiling means nothing.",
            size=SMALL,
        )
    if an.primary:
        page.text(verdict_line(an, proto), size=SMALL)
    page.text(power_text(an, num, proto), size=SMALL, gap=0.2)
    page.text(f"({next(letters)}) Precision at IoU thresholds (P@K: % of pairs with IoU ≥ K)", weight="bold", size=10)
    page.table(tables.precision(an, inp.variants, full(inp.results), num, proto))
    return page


def verdict_line(an: Analysis, proto) -> str:
    """The primary family's verdicts in one paragraph (their numbers: the verdicts page)."""
    family = "the steps" if all(t.kind == "step" for t in an.primary) else "each row against the Baseline"
    parts = [f"{t.a} → {t.b}: {t.verdict(an.alpha)}" for t in an.primary]
    return (
        f"Verdicts on {proto.short(an.primary_metric)}, {family}, Holm-adjusted (next page: Δ, intervals, p, d): "
        + "; ".join(parts)
        + ". helps / hurts: adjusted p < α; no evidence: not, and the test had 80% power for a difference of d."
    )


def power_text(an: Analysis, num: Numbers, proto) -> str:
    """The detectable differences of the tests actually run, and the seeds needed."""
    pri = an.primary_metric
    if not an.primary:
        return f"Detectable differences: {tables.DASH} (fewer than 2 seeds shared by the rows)."
    level = an.primary[0].level
    head = (
        f"Detectable difference ({an.power:.0%} power, both variances): the primary family on {proto.short(pri)}, "
        f"read at α / m = {level:.3g} (Holm's first step): d = "
        f"{num.put('power/primary', an.detectable(pri, 'primary'))} pp; exploratory comparisons (at α = {an.alpha:g}): "
        + ", ".join(
            f"{proto.short(m)} {num.put(f'power/{m}', an.detectable(m, 'exploratory'))} pp" for m in proto.table3
        )
        + ". A true difference smaller than d is likely to go unseen."
    )
    if not an.seeds_needed:
        return head
    parts = [
        f"{s.label} ({s.delta:+g} pp): {num.put(f'seeds_needed/{s.label}', s.seeds) if s.seeds else '> 100'}"
        for s in an.seeds_needed
    ]
    return (
        f"{head} Seeds per row for {an.power:.0%} power on {proto.short(pri)} in the primary family, from the variance "
        f"components measured here (Colas et al. 2018: a pilot, then the power): " + "; ".join(parts) + ". '> 100': "
        "the test videos' own variance is the limit; more seeds do not help, more test videos would."
    )


def verdicts_page(params: Params, inp: ReportInputs, an: Analysis, num: Numbers) -> Page:
    proto = protocol(params)
    page = Page("verdicts", TITLES["verdicts"])
    family = "the incremental steps" if params.report.primary == "steps" else "each row against the Baseline"
    level = an.primary[0].level if an.primary else an.alpha
    page.text(
        VERDICTS.format(
            conf=1 - an.alpha,
            family=family,
            metric=proto.label(an.primary_metric),
            alpha=an.alpha,
            power=an.power,
            level=level,
        ),
        size=SMALL,
    )
    page.text(f"(a) Primary family: {family}, {proto.label(an.primary_metric)} (Holm)", weight="bold", size=10)
    if an.primary:
        page.table(verdicts.primary(an, num, proto))
    else:
        page.text(
            f"{tables.DASH}: fewer than 2 seeds shared by the rows, so no seed variance to test with.", size=SMALL
        )
    rest = [t for t in an.of(TABLE3_KINDS) if t.family != "primary"]
    page.text("(b) The other Table-3 comparisons (exploratory, BH q over the report)", weight="bold", size=10)
    page.table(verdicts.exploratory(rest, an, num, proto), size=SMALL - 0.5)
    if an.components:
        page.text("(c) Variance components of a difference between rows (pp²)", weight="bold", size=10)
        page.table(verdicts.components(an, num, proto))
        page.text(
            "σ² seed: how much a difference moves from one training seed to the next; σ² video: how much it varies "
            "from one test video to another; σ² residual: their interaction and a video's own pairs. Seed share: the "
            "part of a difference's squared standard error that more seeds would shrink (the rest needs more test "
            "videos). Estimated from the mean squares of the rows × seeds × videos table (reports/inference.py).",
            size=SMALL,
        )
    return page


def strata_page(params: Params, inp: ReportInputs, an: Analysis, num: Numbers, grounding: bool = False) -> Page:
    """Table 3 by stratum (the protocol's secondary and primary metric), or with `grounding` the
    grounding and committed shares by stratum; each with the full model − Baseline per stratum."""
    proto, s = protocol(params), an.strata
    name = "grounding" if grounding else "strata"
    page = Page(name, TITLES[name])
    page.text(
        f"Test split, in %, per variant and stratum: mean ± the {1 - an.alpha:.0%} interval, {BOTH}. distractor: "
        "another actor of the referent's class is in an annotated frame of its video, so only the sentence tells "
        "them apart; no_distractor: none is; attribute=a: the attribute the sentence singles the referent out by. "
        + ("" if grounding else proto.real_strata_note),
        size=SMALL,
    )
    if not s.available:
        why = (
            "the per-sample table has no distractor / attribute columns (rerun `dvc repro ablate`)"
            if not s.columns
            else (proto.real_strata_note if params.data.source == "real" else "no test pair carries a label")
        )
        page.text(f"Strata unavailable: {why}", weight="bold", box="#eef3fb")
        return page
    labels = {GROUNDING: "Grounding", COMMITTED: "Committed (grounded, no other actor touched)"}
    shown = [m for m in s.metrics if (m in labels) == grounding]
    for letter, metric in zip("ab", shown):
        page.text(f"({letter}) {labels.get(metric) or proto.label(metric)} by stratum", weight="bold", size=9.5)
        page.table(verdicts.strata_cells(s, metric, num, proto), size=SMALL - 0.5, gap=0.1)
    tested = [t for t in an.of("stratum") if (t.metric in labels) == grounding]
    if tested:
        metric = labels.get(tested[0].metric) or proto.label(tested[0].metric)
        page.text(f"(c) {full(inp.results)} − Baseline per stratum, {metric} (exploratory)", weight="bold", size=9.5)
        page.table(verdicts.strata_tests(tested, an, num), size=SMALL - 0.5)
    if grounding:
        page.text(
            "Grounding: % of the pairs whose frame holds another actor where the prediction overlaps the referent more "
            "than any other actor (picking the right actor, apart from drawing its mask; mAP needs both). Committed: % "
            "where it overlaps the referent and no other actor; the other grounded pairs hedge (a second actor passed "
            "θ × the referent's probability, so the mask covers both) and lose IoU for it. Chance level: the "
            "shuffled-sentence control.",
            size=SMALL,
        )
    if s.unlabelled:
        page.text(f"Runs left out (no labelled test pair): {', '.join(s.unlabelled)}.", size=SMALL)
    return page


def sensitivity_page(params: Params, inp: ReportInputs, an: Analysis, num: Numbers) -> Page:
    page = Page("sensitivity", TITLES["sensitivity"])
    page.text(
        "The reconstruction leaves three readings open: the BCE over a frame's pixels as a mean or a sum "
        "(loss.seg_reduction), the decoder's multi-modal tensor as a concatenation or an element-wise product "
        "(model.fusion), and the visual map F as the levels' concatenation or reduced to C by a 3×3 conv "
        "(model.merge). Each block is the whole ablation with one reading changed from params.yaml, every variant at "
        f"the main run's budget. Levels and differences: {1 - an.alpha:.0%} intervals, {BOTH}; q: exploratory.",
        size=SMALL,
    )
    page.table(verdicts.readings(an.readings, an, num, protocol(params)), size=SMALL - 0.5)
    return page


def fig6_page(params: Params, inp: ReportInputs, an: Analysis, num: Numbers) -> Page:
    proto = protocol(params)
    page = Page("fig6", TITLES["fig6"])
    studies = (
        ("rhic_ratio", inp.rhic, figures.rhic_ratio, "ratio", paper.FIG6A_BEHAVIOUR),
        (
            "lambda_sensitivity",
            inp.lam,
            figures.lambda_sensitivity,
            "λ",
            paper.FIG6B_BEHAVIOUR + " Ours: L = λ·L_seg + (1 − λ)·L_ccl.",
        ),
    )
    for study, df, draw, what, behaviour in studies:
        sw = an.sweeps[study]
        axs = page.axes(3.35, ncols=2, left=0.6, wspace=0.7)
        for ax, metric in zip(axs, (proto.primary, proto.secondary)):
            draw(
                ax,
                df,
                metric,
                sw.intervals(metric),
                interval_label(sw, an),
                None if proto.cvls_paper else proto.test_short,
            )
        page.legend(*figures.take_legend(axs[0]))
        figures.take_legend(axs[1])
        page.text(
            f"Full CVLS model at each {what} on val and test; {sweep_note(sw, an)} {behaviour}", size=SMALL, gap=0.12
        )
    return page


def interval_label(sw: SweepAnalysis, an: Analysis) -> str:
    return f"{1 - an.alpha:.0%} CI (seeds{' from Table 3' if sw.borrowed else ''} + test videos)"


def sweep_note(sw: SweepAnalysis, an: Analysis) -> str:
    seeds = f"seeds per point: {sw.seeds} (line: their mean; dots: the seeds)"
    if not sw.cells:
        why = f"{sw.without_samples} run(s) have no per-sample table" if sw.without_samples else "Table 3 has one seed"
        return f"{seeds}; no interval: {why}."
    if sw.borrowed:
        how = (
            "one seed per point: Table 3's seed variance and seed × video residual (pooled over its rows, same split "
            "and metric) plus the point's own test-video variance"
        )
    else:
        how = "the seed variance pooled over the points, plus the test videos"
    missing = f" {sw.without_samples} run(s) have no per-sample table: no bar there." if sw.without_samples else ""
    return (
        f"{seeds}; bars: the {1 - an.alpha:.0%} interval of each level, {how}. The points share their test videos: "
        f"the next page compares each with the default, paired.{missing}"
    )


def fig6_tests_page(params: Params, inp: ReportInputs, an: Analysis, num: Numbers) -> Page:
    page = Page("fig6_tests", TITLES["fig6_tests"])
    page.text(
        "Each swept point minus the default point (params.yaml's value, the main run's), on the same seeds and "
        f"videos: Δ with its {1 - an.alpha:.0%} interval (seed variance as on Fig. 6), p, the BH q over the report's "
        "exploratory comparisons, and d, the difference the test finds with 80% power.",
        size=SMALL,
    )
    for study, sw in an.sweeps.items():
        title = "Fig. 6a: RHIC hard:easy ratio" if study == "rhic_ratio" else "Fig. 6b: λ (weight of L_seg)"
        page.text(f"{title} (default {sw.default or tables.DASH})", weight="bold", size=10)
        if sw.tests:
            page.table(verdicts.sweep_tests(sw, an, num, protocol(params)), size=SMALL - 0.5)
        else:
            page.text(f"{tables.DASH}: the default point was not swept, or no run has a per-sample table.", size=SMALL)
    return page


def calibration_page(params: Params, inp: ReportInputs, an: Analysis, num: Numbers) -> Page:
    page = Page("calibration", TITLES["calibration"])
    cal = an.calibration
    sim, spec = cal.simulated, cal.spec
    page.text(
        f"{num.put('calibration/sims', sim.sims)} Table 3s with no true difference, simulated at the variance "
        "components this Table 3 measures (the same rows, seeds, test videos and units per video; "
        "reports/calibration.py), each analysed with the report's own tests. A calibrated test flags a null "
        f"difference at its claimed rate ({an.alpha:.0%}).",
        size=SMALL,
    )
    page.table(verdicts.simulated(cal, num))
    page.text(
        f"Power at the printed detectable difference: {num.put('calibration/power/primary', 100 * sim.power_primary)}% "
        f"(primary family, Holm, d = {num.put('calibration/d/primary', sim.d_primary, 2)} pp) and "
        f"{num.put('calibration/power/exploratory', 100 * sim.power_exploratory)}% (one test at α, d = "
        f"{num.put('calibration/d/exploratory', sim.d_exploratory, 2)} pp); a row's interval covers its true level in "
        f"{num.put('calibration/coverage', 100 * sim.coverage)}% of the tables. The last two kinds leave a variance "
        "out: 'test videos only' holds the trained models fixed (a bootstrap over pairs or videos does this), "
        "'two-stage bootstrap' resamples 3 seeds, which have only 10 distinct resamples. Components used (pp², "
        f"shared / each row's own): seed {spec.seed:.2f} / {spec.seed_row:.2f}, video {spec.video:.1f} / "
        f"{spec.video_row:.2f}, seed × video {spec.resid:.1f} / {spec.resid_row:.1f}, "
        f"unit {spec.unit:.0f} / {spec.unit_row:.0f}.",
        size=SMALL,
    )
    if cal.aa is not None:
        aa = cal.aa
        page.text("A/A runs: one configuration at many seeds (ablations/calibration.py)", weight="bold", size=10)
        page.text(
            f"Seeds {', '.join(map(str, aa.seeds))}, split {aa.splits} times at random into {aa.rows} pseudo-rows of "
            f"{aa.per_row} seeds: each split is a Table 3 with no true difference. The splits share their runs, so "
            "the rates below are averages over dependent tables, not independent trials.",
            size=SMALL,
        )
        page.table(verdicts.aa(cal, num))
        if cal.aa_components:
            parts = ", ".join(
                f"{k} {num.put(f'calibration/aa/components/{k}', v, 2)}" for k, v in cal.aa_components.items()
            )
            page.text(f"Its variance components ({proto_short(params, an)}, pp²): {parts}.", size=SMALL)
    else:
        page.text(
            "No A/A runs: `python ablations/calibration.py` trains one configuration at more seeds and adds them here.",
            size=SMALL,
        )
    return page


def proto_short(params: Params, an: Analysis) -> str:
    return protocol(params).short(an.primary_metric)
