"""The report's pages, one function each, in reading order (see PAGE_TITLES)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from core.config import Params
from core.tracking import git_commit
from reports import figures, paper, tables, verdicts
from reports.ablation_pages import TITLES
from reports.analysis import Analysis
from reports.document import SMALL, Page
from reports.inputs import ReportInputs, qualitative_image
from reports.protocol import Protocol, protocol, split_name
from reports.tables import Numbers, Table
from reports.variants import baseline, full

PAGE_TITLES = {
    "title": "CVLS ablation suite — report",
    **{k: TITLES[k] for k in ("table3", "verdicts", "strata", "grounding", "sensitivity", "fig6", "fig6_tests")},
    "main_results": "Main results vs the paper's Tables 1–2",
    "training": "Training curves and the shuffled-sentence control",
    "calibration": TITLES["calibration"],
    "qualitative": "Qualitative: Baseline vs full CVLS",
}


def page_titles(proto: Protocol) -> dict[str, str]:
    """PAGE_TITLES with the dataset's main-results title (a dataset without the paper's Tables 1-2 has its own)."""
    return {**PAGE_TITLES, "main_results": proto.main_title or PAGE_TITLES["main_results"]}


def data_notice(params: Params) -> str:
    proto = protocol(params)
    if not proto.cvls_paper:
        name = proto.title
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


def title_page(params: Params, inp: ReportInputs, num: Numbers, contents: Sequence[str]) -> Page:
    proto = protocol(params)
    page = Page("title", PAGE_TITLES["title"])
    page.text(
        "Contrastive Video-Language Segmentation (Liang et al., arXiv 2109.14131): ablations, studies and "
        + (
            "main results of this suite, next to the paper's numbers."
            if proto.cvls_paper
            else f"main results of this suite on {proto.title}, in the DAVIS metrics J, F and J&F "
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
        ("confidence", f"{p.report.confidence:.0%} (α = {1 - p.report.confidence:g})"),
        ("primary family", f"{p.report.primary} on {p.report.primary_metric or proto.primary} (Holm)"),
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
    page.text("\n".join(f"{i}. {t}" for i, t in enumerate(contents, start=2)), size=SMALL)
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


def training_page(params: Params, inp: ReportInputs, an: Analysis, num: Numbers) -> Page:
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
    page.table(verdicts.shuffled(an, inp.results, inp.main_metrics, num, proto))
    page.text(
        f"Δ: each variant's own test {proto.units(2)} scored with their sentence minus the same {proto.units(2)} with "
        f"another sample's sentence (the same models), with its {params.report.confidence:.0%} interval counting seeds "
        "and test videos, and the BH q over the report's exploratory comparisons: whether the row uses the sentence "
        "beyond noise. The main run's row: its metrics only (it is one of the full model's seeds).",
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
