"""The report's pages, one function each, in reading order (see PAGE_TITLES)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from core.config import DATASET_NAMES, Params
from core.tracking import git_commit
from reports import figures, paper, strata, tables
from reports.document import SMALL, Page
from reports.inputs import ReportInputs, qualitative_image
from reports.protocol import Protocol, protocol, split_name
from reports.sweeps import point_intervals
from reports.tables import Numbers, Table
from reports.variants import baseline, full

PAGE_TITLES = {
    "title": "CVLS ablation suite — report",
    "table3": "Table 3 reproduced: component ablation",
    "strata": "Table 3 by stratum: distractors and attributes",
    "significance": "Paired significance of each incremental step",
    "sensitivity": "Reconstruction sensitivity: Table 3 under each [open] reading",
    "fig6": "Fig. 6: RHIC ratio and λ sensitivity",
    "main_results": "Main results vs the paper's Tables 1–2",
    "training": "Training curves and the shuffled-sentence control",
    "qualitative": "Qualitative: Baseline vs full CVLS",
}
# the J&F datasets have no paper Tables 1-2 to compare with
MAIN_RESULTS_TITLES = {
    "ytvos": "Main results vs LBDT-4's published Ref-YouTube-VOS numbers (another method)",
    "mevis": "Main results: J&F on MeViS valid_u (no published context)",
}


def page_titles(proto: Protocol) -> dict[str, str]:
    """PAGE_TITLES with the dataset's main-results title."""
    return {**PAGE_TITLES, "main_results": MAIN_RESULTS_TITLES.get(proto.dataset, PAGE_TITLES["main_results"])}


def data_notice(params: Params) -> str:
    proto = protocol(params)
    if not proto.cvls_paper:
        name = DATASET_NAMES[proto.dataset]
        if params.data.source == "synthetic":
            return (
                f"DATA IS SYNTHETIC: every number of ours in this report comes from the generated synthetic twin of "
                f"{name} (the {name} on-disk layout, not the real videos); test split: the {proto.test_split}. "
                "Compare trends and orderings, not values."
            )
        return f"Data: the real {name}; test split: the {proto.test_split}."
    if params.data.source == "synthetic":
        return (
            "DATA IS SYNTHETIC: every number of ours in this report comes from the generated synthetic benchmark "
            "(A2D / J-HMDB on-disk layout, not the real videos). "
            + paper.SOURCE_NOTE
            + " Compare trends and orderings, not values."
        )
    return "Data: the real A2D Sentences / J-HMDB Sentences benchmarks. " + paper.SOURCE_NOTE


def backbone_name(params: Params) -> str:
    """The ResNet and, where model.backbone_widths narrows it, its Res2..Res5 widths."""
    widths = params.model.backbone_widths
    return params.model.backbone + (f" ({'/'.join(map(str, widths))} ch)" if widths else "")


def lr_schedule_name(params: Params) -> str:
    """train.lr_schedule as run: cosine with its warm-up, or the plateau with its patience and factor."""
    t = params.train
    if t.lr_schedule == "cosine":
        return f"cosine, {t.warmup_steps} warm-up steps"
    return f"plateau (patience {t.plateau_patience}, x{t.plateau_factor:g})"


def backbone_init(params: Params) -> str:
    """How the backbone started, as the title page states it."""
    if params.model.init == "pretext":
        return f"pretext, {params.pretrain.steps} steps, no sentences"
    if params.model.init == "imagenet":
        return f"ImageNet file {params.model.pretrained_weights.name}"  # type: ignore[union-attr]
    return "random (scratch)"


def env_label(env: dict[str, str]) -> str:
    """'torch 2.x, torchvision 0.y, <cpu> (<isa>)[, <gpu>], <precision>': an environment, threads apart
    (core.runtime.environment)."""
    parts = [f"{k} {env[k]}" for k in ("torch", "torchvision") if k in env]
    parts += [env["cpu"] + (f" ({env['isa']})" if "isa" in env else "")] if "cpu" in env else []
    return ", ".join(parts + [env[k] for k in ("gpu", "precision") if k in env])


def runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def environment_note(envs: Sequence[dict[str, str]], num: Numbers) -> tuple[str, bool]:
    """Where the Table-3 and study runs were trained (core.runtime.environment) and whether they
    differ (True): rows from several environments are not reproducible from their seeds alone.
    Thread counts are stated apart: the suite's own layout gives its stages different counts."""
    kinds = Counter(env_label(e) for e in envs if e)
    unrecorded = sum(1 for e in envs if not e)
    threads = sorted({int(e["threads"]) for e in envs if e.get("threads", "").isdigit()})
    num.put("environments", len(kinds))
    head = "Environment of the runs (their run.json)"
    if not kinds:
        return f"{head}: not recorded ({runs(unrecorded)} trained before the suite recorded it).", False
    parts = [f"{runs(n)}: {kind}" for kind, n in kinds.most_common()]
    if unrecorded:
        parts.append(f"{runs(unrecorded)}: not recorded")
    spread = "" if not threads else f"; torch threads {threads[0]}" + (f"-{threads[-1]}" if len(threads) > 1 else "")
    text = f"{head}: {'; '.join(parts)}{spread}."
    if len(parts) == 1:
        return text, False
    return (
        f"{text} {len(parts)} different environments: the same config and seed give other numbers under another "
        "library build, CPU instruction set, precision or thread count, so each row is reproducible only in its own.",
        True,
    )


def title_page(params: Params, inp: ReportInputs, num: Numbers) -> Page:
    proto = protocol(params)
    page = Page("title", PAGE_TITLES["title"])
    page.text(
        "Contrastive Video-Language Segmentation (Liang et al., arXiv 2109.14131): ablations, studies and "
        + (
            "main results of this suite, next to the paper's numbers."
            if proto.cvls_paper
            else f"main results of this suite on {DATASET_NAMES[proto.dataset]}, in the DAVIS metrics J, F and J&F "
            "(the paper has no numbers on this dataset)."
        ),
        gap=0.15,
    )
    synthetic = params.data.source == "synthetic"
    page.text(
        data_notice(params),
        weight="bold",
        color="darkred" if synthetic else "black",
        box="#fde8e8" if synthetic else "#eef3fb",
        gap=0.2,
    )
    if not proto.cvls_paper:
        page.text(f"{proto.context_note}.", size=SMALL, gap=0.15)
    p, s = params, params.studies
    info = Table(["setting", "value", "setting", "value"])
    kv = [
        ("data source", f"{p.data.source} ({'generated' if synthetic else 'real'})"),
        ("fingerprint", inp.fingerprint),
        ("backbone", backbone_name(p)),
        ("backbone init", backbone_init(params)),
        ("git commit", git_commit(params.root)[:12]),
        ("date", dt.datetime.now().strftime("%Y-%m-%d %H:%M")),
        ("input size", f"{inp.processed.get('input_size', p.data.input_size)} px"),
        ("epochs (main run)", str(p.train.epochs)),
        ("batch (clips)", str(p.train.batch_size)),
        ("lr (Adam)", f"{p.train.lr:g}"),
        ("lr schedule", lr_schedule_name(p)),
        ("[open] readings", f"L_seg {p.loss.seg_reduction}, fusion {p.model.fusion}, F {p.model.merge}"),
        ("λ (lambda_seg)", f"{p.loss.lambda_seg:g}"),
        ("τ (tau)", f"{p.loss.tau:g}"),
        ("RHIC ratio", p.loss.rhic_ratio),
        ("θ (mask threshold)", f"{p.eval.threshold:g}"),
        ("ablation seeds", ", ".join(map(str, p.ablation.seeds))),
        ("study seeds", ", ".join(map(str, s.seeds))),
        ("budget (every run)", f"{p.train.epochs} epochs, as the main run"),
        ("bootstrap reps", str(p.report.bootstrap)),
        ("confidence", f"{p.report.confidence:.0%}"),
    ]
    info.rows = [[*kv[i], *(kv[i + 1] if i + 1 < len(kv) else ("", ""))] for i in range(0, len(kv), 2)]
    page.text("Run configuration (params.yaml)", weight="bold", size=10)
    page.table(info, full_width=True)
    env_text, mixed = environment_note(inp.environments, num)
    page.text(env_text, size=SMALL, color="darkred" if mixed else "black", gap=0.1)
    page.text("Dataset (processed store)", weight="bold", size=10)
    page.table(tables.dataset_counts(inp.processed, num))
    page.table(tables.skipped_counts(inp.processed, num))
    if inp.synthetic and inp.synthetic.get("generated", True):
        syn = inp.synthetic
        page.text(
            f"Synthetic benchmark: seed {syn.get('seed', '?')}, distractor fraction "
            f"{syn.get('distractor_fraction', '?')} (share of sentences whose referent has a same-class "
            f"distractor in the clip), measured same-class fraction {syn.get('same_class_fraction', '?')}.",
            size=SMALL,
        )
    page.text("Contents", weight="bold", size=10)
    titles = list(page_titles(proto).values())[1:]
    page.text("\n".join(f"{i}. {t}" for i, t in enumerate(titles, start=2)), size=SMALL)
    return page


BOUNDS_NOTE = (
    "Bounds (test split, from the runs' bounds.json, core/bounds.py; they depend on the data alone): the oracle "
    "ceiling scores the referent's ground-truth mask at the decoder's resolution (perfect grounding at this "
    "architecture's output size); the language-blind bound is the expected score of a predictor that knows the "
    "referent's class but not the sentence (one of the frame's instances of that class, at random). Headroom "
    "closed: (ours − blind) / (oracle − blind) of the mean over seeds, in %: 0 at the blind bound, 100 at the ceiling."
)
NO_BLIND_NOTE = (
    f"Headroom closed: {tables.NA}, no language-blind bound (the data has no class labels, as real A2D Sentences)."
)
NO_BOUNDS_NOTE = (
    "Bounds: no Table-3 run has <run>/eval/bounds.json (runs evaluated before the bounds were written); "
    "re-evaluate them for the oracle ceiling, the language-blind bound and the share of the headroom closed."
)


def table3_bounds(inp: ReportInputs) -> dict[str, dict[str, float]] | None:
    """The test split's bounds (None when absent or without the oracle)."""
    b = (inp.bounds or {}).get("test")
    return b if b and "oracle" in b else None


def table3_intro(params: Params) -> str:
    """What Table 3 shows, in a paragraph."""
    conf, proto = params.report.confidence, protocol(params)
    ours = (
        f"Ours: mean ± CI, the half-width of the {conf:.0%} Student-t interval over seeds (a single seed: the value "
        "alone)."
    )
    if proto.cvls_paper:
        return (
            f"Test split (A2D-format), in %. mAP is 0.5:0.95. {ours} Paper: Table 3 of the paper, measured on real "
            "A2D Sentences; the plain text lost the check marks, so the rows follow the "
            f"{paper.TABLE3_ROW_ORDER_NOTE}."
        )
    return (
        f"Test split: the {split_name(params)}, in %. J: region similarity (the IoU of a frame), F: boundary "
        "F-measure, J&F = (J + F) / 2, DAVIS protocol: per expression the mean over its annotated frames, then the "
        f"mean over expressions. {ours} {proto.context_note}"
        + (" (shown on the full model's row, for orientation only)." if proto.reference else ".")
    )


def table3_page(params: Params, inp: ReportInputs, num: Numbers) -> Page:
    conf, proto = params.report.confidence, protocol(params)
    page = Page("table3", PAGE_TITLES["table3"])
    page.text(table3_intro(params), size=SMALL)
    bounds = table3_bounds(inp)
    if proto.cvls_paper:
        heading = f"(a) mAP 0.5:0.95, Overall IoU, Mean IoU — {paper.TABLE3_ROW_ORDER_NOTE}"
    else:
        heading = f"(a) {', '.join(proto.label(m) for m in proto.table3)} (DAVIS protocol)"
    page.text(heading, weight="bold", size=10)
    page.table(tables.table3(inp.results, conf, num, bounds, proto))
    if bounds is None:
        page.text(NO_BOUNDS_NOTE, size=SMALL)
    else:
        page.text(BOUNDS_NOTE, size=SMALL)
        if "language_blind" in bounds:
            page.table(tables.headroom(inp.results, bounds, num, proto))
            missing = [
                proto.label(m)
                for m in tables.headroom_metrics(proto)
                if m not in bounds["language_blind"] or m not in bounds["oracle"]
            ]
            if missing:
                page.text(
                    f"Headroom closed: {tables.NA} for {', '.join(missing)}: bounds.json has no such bound.", size=SMALL
                )
        else:
            page.text(NO_BLIND_NOTE, size=SMALL)
    page.text(tables.detectable_differences(inp.results, inp.per_sample, conf, num, proto=proto), size=SMALL, gap=0.2)
    page.text("(b) Precision at IoU thresholds (P@K: % of samples with IoU ≥ K)", weight="bold", size=10)
    page.table(tables.table3_precision(inp.results, conf, num, proto))
    page.text(data_notice(params), size=SMALL, color="darkred" if params.data.source == "synthetic" else "black")
    return page


def strata_unavailable(params: Params, found: strata.StrataScores) -> str:
    """Why the strata page has no table, in one sentence."""
    if not found.columns:
        return (
            f"Strata unavailable: {params.outputs / 'ablation/per_sample.csv'} has no distractor / attribute "
            "columns (written before the strata existed); rerun `dvc repro ablate`."
        )
    if params.data.source == "real":
        return "Strata unavailable: " + protocol(params).real_strata_note
    return (
        "Strata unavailable: no test pair of the Table-3 runs carries a distractor or attribute label (runs "
        "evaluated before the labels were written); re-evaluate them."
    )


GROUNDING_NOTE = (
    "Grounding: % of the pairs whose frame holds another actor (the last rows of (c) and (d) count them) where "
    "the prediction overlaps the referent more than any other actor: picking the right actor, apart from "
    "drawing its mask; mAP needs both. Committed: % of them where it overlaps the referent and no other actor; "
    "the other grounded pairs hedge (a second actor's probability passed theta x the referent's, so the mask "
    "covers both) and lose IoU for it. Chance levels: the shuffled-sentence control (test_shuffled in each "
    "run's eval/metrics.json)."
)


STRATA_SIZE = SMALL - 1  # four tables of seven rows share the page


def strata_page(params: Params, inp: ReportInputs, num: Numbers) -> Page:
    conf, proto = params.report.confidence, protocol(params)
    page = Page("strata", PAGE_TITLES["strata"])
    split = "Test split" if proto.cvls_paper else f"The {split_name(params)}"
    units = (
        ""
        if proto.cvls_paper
        else " J and J&F of a stratum: over its expressions (an expression and all its frames share its labels)."
    )
    page.text(
        f"{split}, in %, per Table-3 variant and stratum: mean ± CI (the half-width of the {conf:.0%} Student-t "
        "interval over seeds of each run's score on the stratum, from <run>/eval/strata.json; one seed: the value "
        "alone). distractor: another actor of the referent's class is in an annotated frame of its video, so only "
        "the sentence tells them apart; no_distractor: none is; attribute=a: the attribute type the sentence "
        "singles the referent out by. The synthetic benchmark records both labels. " + proto.real_strata_note + units,
        size=SMALL,
    )
    found = strata.strata_scores(inp.results, inp.per_sample, proto=proto)
    if not found.available:
        page.text(strata_unavailable(params, found), weight="bold", box="#eef3fb")
        return page
    grounded = [strata.GROUNDING, strata.COMMITTED] if strata.GROUNDING in found.scores else []
    shown = [*strata.metrics_shown(proto), *grounded]
    labels = {strata.GROUNDING: "Grounding", strata.COMMITTED: "Committed (grounded, no other actor touched)"}
    for letter, metric in zip("abcd", shown):
        label = labels.get(metric) or proto.label(metric)
        page.text(f"({letter}) {label} by stratum", weight="bold", size=9.5)
        page.table(strata.strata_table(found.scores, metric, conf, num, proto), size=STRATA_SIZE, gap=0.1)
    if strata.GROUNDING in found.scores:
        page.text(GROUNDING_NOTE, size=SMALL)
    if found.unlabelled:
        page.text(f"Runs left out (no labelled test pair): {', '.join(found.unlabelled)}.", size=SMALL)
    page.text(data_notice(params), size=SMALL, color="darkred" if params.data.source == "synthetic" else "black")
    return page


def significance_intro(params: Params) -> str:
    """How the significance page tests each step, in a paragraph."""
    r, proto = params.report, protocol(params)
    if proto.cvls_paper:
        return (
            f"Δ Mean IoU: paired bootstrap over the test samples ({r.bootstrap} resamples of the (frame, sentence) "
            "pairs, the same pairs for every seed; IoU difference averaged over seeds and samples, in percentage "
            f"points); {r.confidence:.0%} percentile interval and two-sided p. Δ mAP: paired t-test over seeds "
            f"(same seed, both variants) with its {r.confidence:.0%} t-interval; needs ≥ 2 seeds. "
            "Paper Δ mAP: the difference of the paper's Table 3 rows (row order as reconstructed)."
        )
    sec, pri = proto.label(proto.secondary), proto.label(proto.primary)
    return (
        f"Test split: the {split_name(params)}. Δ {sec}: paired bootstrap over the test expressions ({r.bootstrap} "
        f"resamples of the expressions, the same expressions for every seed; an expression's {sec} is the mean over "
        f"its annotated frames, as the DAVIS protocol scores it; difference averaged over seeds and expressions, in "
        f"percentage points); {r.confidence:.0%} percentile interval and two-sided p. Δ {pri}: paired t-test over "
        f"seeds (same seed, both variants) with its {r.confidence:.0%} t-interval; needs ≥ 2 seeds. The paper has no "
        "ablation on this dataset to compare the steps with."
    )


def significance_page(params: Params, inp: ReportInputs, num: Numbers) -> Page:
    r, proto = params.report, protocol(params)
    page = Page("significance", PAGE_TITLES["significance"])
    page.text(
        "What the paper never reported: whether each added component helps beyond seed and sample noise.", weight="bold"
    )
    page.text(significance_intro(params), size=SMALL)
    page.table(
        tables.significance(
            inp.results, inp.per_sample, reps=r.bootstrap, confidence=r.confidence, num=num, proto=proto
        )
    )
    page.text(
        f"A bootstrap p cannot go below 1/(reps + 1) = {1 / (r.bootstrap + 1):.1e}. Steps are every pair of "
        "variants that differ by exactly one component.",
        size=SMALL,
    )
    return page


def sensitivity_page(params: Params, inp: ReportInputs, num: Numbers) -> Page:
    """The ablation under each [open] reading (ablations/sensitivity.py; only when it ran)."""
    page = Page("sensitivity", PAGE_TITLES["sensitivity"])
    page.text(
        "The spec leaves two readings of Eq. 3 open: the BCE over a frame's pixels as a mean or a sum "
        "(loss.seg_reduction; the sum makes L_seg, not L_ccl, dominate Eq. 4 at λ = 0.8) and the decoder's "
        "multi-modal tensor as a concatenation or an element-wise product (model.fusion); and the visual map F as "
        "the levels' concatenation, as the text writes it, or reduced to C by a 3×3 conv (model.merge). Each row "
        "block is the "
        "whole ablation with one choice changed from params.yaml, every variant at the main run's budget.",
        size=SMALL,
    )
    page.table(tables.sensitivity(inp.sensitivity, num))
    page.text(
        f"Mean ± {params.report.confidence:.0%} t-interval over seeds; Δ mAP: each seed's difference from the same "
        "reading's Baseline on that seed, averaged, with its t-interval.",
        size=SMALL,
    )
    return page


def fig6_page(params: Params, inp: ReportInputs, num: Numbers) -> Page:
    r, proto = params.report, protocol(params)
    page = Page("fig6", PAGE_TITLES["fig6"])
    if proto.cvls_paper:
        units, extra = "samples", "Mean IoU (right) is not in the paper's figure. "
    else:
        units = proto.units(2)
        extra = f"Left {proto.label(proto.primary)}, right {proto.label(proto.secondary)}; the paper's is A2D mAP. "
    studies = (
        (inp.rhic, figures.rhic_ratio, "ratio", paper.FIG6A_BEHAVIOUR),
        (
            inp.lam,
            figures.lambda_sensitivity,
            "λ",
            paper.FIG6B_BEHAVIOUR + " Ours: L = λ·L_seg + (1 − λ)·L_ccl (Eq. 4).",
        ),
    )
    for df, draw, what, behaviour in studies:
        axs = page.axes(3.5, ncols=2, left=0.6, wspace=0.7)
        for ax, metric in zip(axs, (proto.primary, proto.secondary)):
            iv = point_intervals(
                df,
                inp.study_samples,
                metric=metric,
                splits=("val", "test"),
                reps=r.bootstrap,
                confidence=r.confidence,
                proto=proto,
            )
            draw(ax, df, metric, iv, None if proto.cvls_paper else proto.test_short)
        page.legend(*figures.take_legend(axs[0]))
        figures.take_legend(axs[1])
        without = sum(str(h) not in inp.study_samples for h in df["run_hash"])
        missing = (
            f" {without} of the {len(df)} runs have no <run>/eval/per_sample.csv: no bar at their one-seed points."
            if without
            else ""
        )
        page.text(
            f"Ours: full CVLS model on the val and test splits at each {what}, seeds per point: "
            f"{df.groupby('point').size().max()} (line: mean over seeds; dots: the seeds; bars: the {r.confidence:.0%} "
            "interval, Student-t over seeds where a point has ≥ 2, else the percentile bootstrap of the run's "
            f"score over its {units}, {r.bootstrap} resamples).{missing} " + extra + behaviour,
            size=SMALL,
            gap=0.25,
        )
    return page


def main_results_page(params: Params, inp: ReportInputs, num: Numbers) -> Page:
    proto = protocol(params)
    if not proto.cvls_paper:
        return jf_main_results_page(params, inp, num)
    page = Page("main_results", PAGE_TITLES["main_results"])
    page.text(
        "Ours: the main run (full model, params.yaml as is) on the A2D-format test split and zero-shot on the "
        "J-HMDB-format split (no fine-tuning). Paper: CVLS rows of Table 1 (A2D Sentences test) and Table 2 "
        "(J-HMDB Sentences). " + data_notice(params),
        size=SMALL,
    )
    page.table(tables.main_results(inp.main_metrics, num))
    left, right = page.axes(3.6, ncols=2, left=0.6, wspace=0.7, bottom=0.8)
    figures.ours_vs_paper(
        left, inp.main_metrics.get("test", {}), paper.TABLE1_A2D, "A2D-format test", "paper (CVLS row)"
    )
    figures.ours_vs_paper(
        right, inp.main_metrics.get("jhmdb", {}), paper.TABLE2_JHMDB, "J-HMDB-format (zero-shot)", "paper (CVLS row)"
    )
    page.legend(*figures.take_legend(left))
    page.text(
        "Paper bars: Table 1 (A2D Sentences test) on the left, Table 2 (J-HMDB Sentences) on the right.", size=SMALL
    )
    return page


def jf_main_results_page(params: Params, inp: ReportInputs, num: Numbers) -> Page:
    """The main results on a J&F dataset: our test and val J, F, J&F (and the A2D-style metrics) next
    to the context numbers; no J-HMDB split."""
    proto = protocol(params)
    page = Page("main_results", page_titles(proto)["main_results"])
    page.text(
        f"Ours: the main run (full model, params.yaml as is) on the {split_name(params)} and on val (held-out train "
        "videos). J, F and J&F: the DAVIS protocol (per expression the mean over its annotated frames, then the "
        "mean over expressions); the A2D-style metrics below them score each (frame, expression) pair. "
        f"{proto.context_note}.",
        size=SMALL,
    )
    page.table(tables.main_results(inp.main_metrics, num, proto))
    page.text(data_notice(params), size=SMALL, color="darkred" if params.data.source == "synthetic" else "black")
    left, right = page.axes(3.6, ncols=2, left=0.6, wspace=0.7, bottom=0.8)
    ref_label = proto.context_label.replace("\n", " ")
    for ax, split, title in ((left, "test", proto.test_short), (right, "val", "val")):
        ours = inp.main_metrics.get(split, {})
        figures.ours_vs_paper(ax, ours, dict(proto.reference), title, ref_label, keys=proto.main_metrics)
    page.legend(*figures.take_legend(left))
    if proto.reference:
        page.text(
            f"Grey bars: {proto.context_note.removeprefix('Context: ')}; none where that source has no such number.",
            size=SMALL,
        )
    return page


def training_page(params: Params, inp: ReportInputs, num: Numbers) -> Page:
    proto = protocol(params)
    page = Page("training", PAGE_TITLES["training"])
    variants = inp.variants
    left, right = page.axes(3.0, ncols=2, left=0.6, wspace=0.65)
    figures.training_curve(left, inp.histories, "train_loss", variants, "train loss")
    figures.training_curve(right, inp.histories, "val_loss", variants, "validation loss")
    figures.take_legend(right)
    page.legend(*figures.take_legend(left), title="variant")
    page.text(
        "Ablation runs, loss per epoch (line: mean over seeds; band: min–max over seeds). The total loss of "
        "Eq. 4 includes the contrastive term only for variants with CCL, so levels differ across variants.",
        size=SMALL,
        gap=0.25,
    )
    (ax,) = page.axes(2.6, bottom=0.8)
    figures.shuffled_control(ax, inp.results, inp.main_metrics, variants, proto.primary)
    page.legend(*figures.take_legend(ax))
    page.text(
        "Each test sample scored again with another sample's sentence: a model that uses the language loses "
        f"most of its {proto.short(proto.primary)}; one that segments the most salient object does not.",
        size=SMALL,
    )
    r = params.report
    page.table(
        tables.shuffled_control(
            inp.results,
            inp.per_sample,
            inp.main_metrics,
            reps=r.bootstrap,
            confidence=r.confidence,
            num=num,
            proto=proto,
        )
    )
    page.text(
        f"Δ {proto.label(proto.secondary)}: each variant's own test {proto.units(2)} scored with their sentence minus "
        f"the same {proto.units(2)} with another sample's sentence (the same model and seed), paired bootstrap over "
        f"the {proto.units(2)} ({r.bootstrap} resamples, difference averaged over seeds), {r.confidence:.0%} "
        "percentile interval and two-sided p: whether the row uses the sentence beyond noise. The main run's row has "
        "no per-sample table here (it is one of the full model's seeds).",
        size=SMALL,
    )
    return page


def qualitative_page(params: Params, inp: ReportInputs, num: Numbers, images: dict[str, Path]) -> Page:
    page = Page("qualitative", PAGE_TITLES["qualitative"])
    page.text(
        "The same test clips for both models: a fixed sample set (the frames with the most other objects, "
        "which include same-class distractors on the benchmark). Left column: the ground-truth mask, titled with "
        "the sentence; right column: the prediction, titled with its IoU; each mask drawn as a white outline edged "
        "in black over the frame. "
        "The images are the evaluation stage's per-run figures, shown scaled; full size: "
        + "; ".join(str(p) for p in images.values())
        + ".",
        size=SMALL,
    )
    axs = page.axes(page.remaining - 0.1, ncols=len(images), left=0.0, right=0.0, top=0.3, bottom=0.05, wspace=0.2)
    for ax, (title, path) in zip(axs, images.items()):
        figures.image(ax, path, title)
    return page


def qualitative_images(params: Params, inp: ReportInputs) -> dict[str, Path]:
    seeds = list(dict.fromkeys(inp.results["seed"]))
    seed = params.ablation.seeds[0] if params.ablation.seeds[0] in seeds else seeds[0]
    return {
        f"{v} (seed {seed})": qualitative_image(params, inp.results, v, seed)
        for v in (baseline(inp.results), full(inp.results))
    }
