"""What the report shows per dataset (params.data.dataset), from its spec (core.data.registry).

A2D Sentences is scored as the CVLS paper scores it (mAP 0.5:0.95, Overall / Mean IoU, over the
(frame, sentence) pairs), next to the paper's numbers. Ref-YouTube-VOS and MeViS are scored with
the DAVIS metrics J, F and J&F (core.vos_metrics: per expression the mean over its annotated
frames, then the mean over expressions); the CVLS paper has no numbers on them, so the context is
another method's published numbers (Ref-YouTube-VOS) or nothing (MeViS). How each metric is
computed from the per-sample rows, and resampled (by test video), is reports.scores'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from core.config import Params
from core.data import registry
from core.data.spec import DatasetSpec
from core.vos_metrics import JF_KEYS
from reports import paper

JF_LABELS = {"J": "J", "F": "F", "J&F": "J&F"}
LABELS = {**paper.METRIC_LABELS, **JF_LABELS}  # metric -> how the pages name it


def short_label(metric: str) -> str:
    """A metric's label without mAP's threshold range (table headers)."""
    return LABELS[metric].replace(" 0.5:0.95", "")


@dataclass(frozen=True)
class Protocol:
    dataset: str  # params.data.dataset
    table3: tuple[str, ...]  # Table 3's metrics, in column order
    primary: str  # paired t over seeds, Fig. 6 left, the shuffled-sentence control
    secondary: str  # paired bootstrap over units, Fig. 6 right
    unit_name: str  # how the pages name a unit of the Table-3 metrics (a pair, an expression)
    main_metrics: tuple[str, ...]  # the main-results page's rows
    test_split: str  # how the pages name the test split (a noun phrase)
    test_short: str  # ... in a table header
    cvls_paper: bool  # the CVLS paper's numbers are of this dataset (Tables 1-3, with the J-HMDB split)
    # the context numbers: per variant (the paper's Table 3) and/or one row of another method's
    # final numbers, shown on the full model's row
    per_variant: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    reference: Mapping[str, float] = field(default_factory=dict)
    context_label: str = "paper"  # the context column's header
    context_key: str = "paper/table3"  # its report_numbers.json prefix
    context_note: str = ""  # what the context numbers are, in one sentence
    real_strata_note: str = ""  # which strata real data of this dataset can have
    title: str = ""  # how the pages name the dataset
    main_title: str | None = None  # the main-results page's title; None: the paper's Tables 1-2

    @property
    def jf(self) -> bool:
        return self.primary == "J&F"

    def label(self, metric: str) -> str:
        return LABELS[metric]

    def short(self, metric: str) -> str:
        return short_label(metric)

    def context(self, variant: str, metric: str, full: str) -> float | None:
        """The context number of a Table-3 row (`full`: the name of the full model's row)."""
        if variant in self.per_variant:
            return self.per_variant[variant].get(metric)
        return self.reference.get(metric) if variant == full else None

    def units(self, n: int) -> str:
        return f"{self.unit_name}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class Context:
    """Published numbers shown next to ours: a dataset's `ReportText.context` (core.data.registry).
    `note` and `main_title` may name the dataset ({title}), its test split ({test_short}) and its
    primary metric ({primary})."""

    label: str  # the context column's header
    key: str  # its report_numbers.json prefix
    note: str  # what the context numbers are, in one sentence
    main_title: str | None = None  # the main-results page's title; None: PAGE_TITLES's (the paper's Tables 1-2)
    per_variant: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    reference: Mapping[str, float] = field(default_factory=dict)
    cvls_paper: bool = False  # the CVLS paper's own numbers (Tables 1-3, with the J-HMDB split)


LBDT_NOTE = (
    f"Context: {paper.LBDT4_SOURCE}, ANOTHER METHOD's published Ref-YouTube-VOS numbers (J "
    f"{paper.LBDT4_YTVOS['J']:.2f}, F {paper.LBDT4_YTVOS['F']:.2f}, J&F {paper.LBDT4_YTVOS['J&F']:.2f}), measured "
    "on the real Ref-YouTube-VOS valid set (its evaluation server), not on our offline test split; the CVLS "
    "paper reports no Ref-YouTube-VOS numbers"
)
CONTEXTS = {
    "cvls": Context(
        "paper",
        "paper/table3",
        "Paper: Table 3 of the paper, measured on real A2D Sentences",
        per_variant=paper.TABLE3,
        cvls_paper=True,
    ),
    "lbdt4": Context(
        "LBDT-4\n(other\nmethod)",
        "context/table3",
        LBDT_NOTE,
        main_title="Main results vs LBDT-4's published Ref-YouTube-VOS numbers (another method)",
        reference=paper.LBDT4_YTVOS,
    ),
    "none": Context(
        "published\n(none)",
        "context/table3",
        "Context: none (the CVLS paper reports no {title} numbers, and the suite cites no other method's)",
        main_title="Main results: {primary} on {title} {test_short} (no published context)",
    ),
}


def protocol_of(spec: DatasetSpec) -> Protocol:
    """The report's protocol of a registered dataset: its metric family, its report text and its context."""
    m, text, ctx = spec.metrics, spec.report, CONTEXTS[spec.report.context]
    names = {"title": spec.title, "test_short": text.test_short, "primary": m.primary}
    return Protocol(
        dataset=spec.name,
        table3=m.table3,
        primary=m.primary,
        secondary=m.secondary,
        unit_name=m.unit,
        main_metrics=(*(JF_KEYS if m.davis else ()), *paper.METRICS),
        test_split=text.test_split,
        test_short=text.test_short,
        cvls_paper=ctx.cvls_paper,
        per_variant=ctx.per_variant,
        reference=ctx.reference,
        context_label=ctx.label,
        context_key=ctx.key,
        context_note=ctx.note.format(**names),
        real_strata_note=text.real_strata_note,
        title=spec.title,
        main_title=None if ctx.main_title is None else ctx.main_title.format(**names),
    )


A2D = protocol_of(registry.get("a2d"))  # the default dataset's: the page builders' default


def protocol(params: Params) -> Protocol:
    """The protocol of params.data.dataset."""
    return protocol_of(params.dataset_spec)


def split_name(params: Params) -> str:
    """How the pages name the test split, with the synthetic twin named as such on synthetic data
    (the paper's own dataset is the synthetic benchmark's layout: its name says so already)."""
    proto = protocol(params)
    if proto.cvls_paper or params.data.source != "synthetic":
        return proto.test_split
    return f"{proto.test_split}, of the synthetic twin in the {proto.title} layout"
