"""What the report shows per dataset (params.data.dataset), in one place.

A2D Sentences is scored as the CVLS paper scores it (mAP 0.5:0.95, Overall / Mean IoU, over the
(frame, sentence) pairs), next to the paper's numbers. Ref-YouTube-VOS and MeViS are scored with
the DAVIS metrics J, F and J&F (core.vos_metrics: per expression the mean over its annotated
frames, then the mean over expressions); the CVLS paper has no numbers on them, so the context is
another method's published numbers (Ref-YouTube-VOS) or nothing (MeViS). How each metric is
computed from the per-sample rows, and resampled (by test video), is reports.scores'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from core.config import Params
from core.sections import DATASET_NAMES
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


A2D_REAL_STRATA = (
    "Real A2D Sentences has no class labels in its sentence h5 files, so no pair can be labelled by distractor "
    "or attribute: on real data the strata are unavailable."
)

A2D = Protocol(
    dataset="a2d",
    table3=paper.TABLE3_METRICS,
    primary="mAP",
    secondary="mean_iou",
    unit_name="pair",
    main_metrics=paper.METRICS,
    test_split="A2D-format",
    test_short="A2D-format test",
    cvls_paper=True,
    per_variant=paper.TABLE3,
    context_label="paper",
    context_key="paper/table3",
    context_note="Paper: Table 3 of the paper, measured on real A2D Sentences",
    real_strata_note=A2D_REAL_STRATA,
)


def jf_protocol(dataset: str, **kw: Any) -> Protocol:
    """The DAVIS protocol of a J&F dataset (core.vos_metrics.JF_DATASETS): J&F, J, F over expressions."""
    return Protocol(
        dataset=dataset,
        table3=("J&F", "J", "F"),
        primary="J&F",
        secondary="J",
        unit_name="expression",
        main_metrics=("J", "F", "J&F", *paper.METRICS),
        cvls_paper=False,
        context_key="context/table3",
        **kw,
    )


LBDT_NOTE = (
    f"Context: {paper.LBDT4_SOURCE}, ANOTHER METHOD's published Ref-YouTube-VOS numbers (J "
    f"{paper.LBDT4_YTVOS['J']:.2f}, F {paper.LBDT4_YTVOS['F']:.2f}, J&F {paper.LBDT4_YTVOS['J&F']:.2f}), measured "
    "on the real Ref-YouTube-VOS valid set (its evaluation server), not on our offline test split; the CVLS "
    "paper reports no Ref-YouTube-VOS numbers"
)
YTVOS = jf_protocol(
    "ytvos",
    test_split="offline test split (held-out Ref-YouTube-VOS train videos)",
    test_short="offline test",
    reference=paper.LBDT4_YTVOS,
    context_label="LBDT-4\n(other\nmethod)",
    context_note=LBDT_NOTE,
    real_strata_note=(
        "Real Ref-YouTube-VOS has object categories (meta.json) but no attribute labels, so on real data only "
        "the distractor strata can exist."
    ),
)
MEVIS = jf_protocol(
    "mevis",
    test_split="MeViS valid_u",
    test_short="valid_u",
    context_label="published\n(none)",
    context_note="Context: none (the CVLS paper reports no MeViS numbers, and the suite cites no other method's)",
    real_strata_note=(
        "Real MeViS gives no per-object category or attribute, so no pair can be labelled by distractor or "
        "attribute: on real data the strata are unavailable."
    ),
)
PROTOCOLS = {p.dataset: p for p in (A2D, YTVOS, MEVIS)}


def protocol(params: Params) -> Protocol:
    """The protocol of params.data.dataset."""
    return PROTOCOLS[params.data.dataset]


def split_name(params: Params) -> str:
    """How the pages name the test split, with the synthetic twin named as such on synthetic data."""
    proto = protocol(params)
    if proto.dataset == "a2d" or params.data.source != "synthetic":
        return proto.test_split
    return f"{proto.test_split}, of the synthetic twin in the {DATASET_NAMES[proto.dataset]} layout"
