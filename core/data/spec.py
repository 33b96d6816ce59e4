"""What the suite knows of a dataset: one `DatasetSpec`, registered by name in core.data.registry.

Every stage that depends on the dataset reads it from the spec of `data.dataset` (detectron2's
DatasetCatalog, in one frozen dataclass): generate (`write_twin`), extract (`read`, `root`,
`extra_roots`, `test_split`, `unions`, `metrics.davis`), evaluate (`metrics`), the submission
export (`submission`), the report (`metrics`, `report`, `title`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.data.meta_expressions import QueryVideo, frame_stem, jpeg_name
from core.data.types import SkipLedger, Video
from core.errors import DataError, ParamsError

if TYPE_CHECKING:
    from core.config import Params
    from core.data.synthetic.scene import DatasetPlan

Unions = MutableMapping[str, dict[int, tuple[int, ...]]]  # video id -> virtual instance id -> its members
# (params, its root, ledger, unions) -> (split, video) of every usable video; split train, test or jhmdb
Reader = Callable[["Params", Path, SkipLedger, Unions], Iterator[tuple[str, Video]]]


@dataclass(frozen=True)
class MetricFamily:
    """How a dataset's test split is scored, and what Table 3 shows of it."""

    name: str
    table3: tuple[str, ...]  # Table 3's metrics, in column order; the first is the primary one
    secondary: str  # the second metric the report tests (Fig. 6 right, the strata)
    unit: str  # what one score of the Table-3 metrics is over: a (frame, sentence) "pair", an "expression"
    # the DAVIS protocol: J, F and J&F over expressions (core.vos_metrics), each expression scored on
    # every annotated frame, so extraction keeps the frames where its referent is absent
    davis: bool

    @property
    def primary(self) -> str:
        return self.table3[0]


# the classic A2D Sentences protocol (core.metrics): mAP 0.5:0.95, Overall / Mean IoU over pairs
A2D_STYLE = MetricFamily("a2d", ("mAP", "overall_iou", "mean_iou"), "mean_iou", "pair", davis=False)
# DAVIS J&F (core.vos_metrics), as Ref-YouTube-VOS's and MeViS's servers score
DAVIS = MetricFamily("davis", ("J&F", "J", "F"), "J", "expression", davis=True)


@dataclass(frozen=True)
class ReportText:
    """How the report speaks of a dataset (reports.protocol)."""

    test_split: str  # how the pages name the test split (a noun phrase)
    test_short: str  # ... in a table header
    real_strata_note: str  # which strata real data of this dataset can have
    # the published numbers shown next to ours (reports.protocol.CONTEXTS): "cvls" (the CVLS
    # paper's own tables), "lbdt4" (another method's), "none"
    context: str = "none"


@dataclass(frozen=True)
class Submission:
    """A split without public masks, whose predictions go to the dataset's server (core.export):
    one PNG per (video, expression, listed frame), zipped as <zip_root>/<vid>/<exp_id>/<frame>.png."""

    split: str  # its folder, e.g. "valid"
    read_split: Callable[[Path, SkipLedger, str], Iterable[QueryVideo]]  # (root, ledger, split) -> its videos
    meta_file: Callable[[Path, str], Path]  # (root, split) -> the meta file that lists what to predict
    frames_dir: Callable[[Path, str, str], Path]  # (root, split, video id) -> its JPEG folder
    zip_root: str | None  # the folder every member of the zip sits in; None: the zip's root

    def videos(self, root: Path, ledger: SkipLedger) -> Iterable[QueryVideo]:
        return self.read_split(root, ledger, self.split)

    def meta(self, root: Path) -> Path:
        return self.meta_file(root, self.split)

    def jpeg(self, root: Path, video_id: str, frame_name: str) -> Path:
        """The JPEG of a listed frame."""
        return self.frames_dir(root, self.split, video_id) / jpeg_name(frame_name)

    def member(self, video_id: str, exp_id: str, frame_name: str) -> str:
        """The zip member of one (video, expression, frame) mask."""
        parts = [video_id, exp_id, frame_stem(frame_name) + ".png"]
        return "/".join([self.zip_root, *parts] if self.zip_root else parts)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: where it is, how it is read, written, scored, reported and submitted."""

    name: str  # its value of data.dataset
    title: str  # how messages and the report name it
    # its layout's root: data.<root>_root with data.source real, <outputs>/raw/<root> with synthetic
    root: str
    read: Reader
    # (params, plan, its root) -> generate's summary, having written the synthetic twin at its root(s)
    write_twin: Callable[["Params", "DatasetPlan", Path], dict]
    metrics: MetricFamily
    report: ReportText
    extra_roots: tuple[str, ...] = ()  # further roots it reads where set (A2D: jhmdb, the zero-shot split)
    test_split: Callable[["Params", Path], dict[str, Any]] | None = None  # summary.json: how its test split is made
    unions: bool = False  # its reader fills `unions` (MeViS's multi-object expressions); summary.json counts them
    submission: Submission | None = None  # its split without public masks, if any

    @property
    def root_key(self) -> str:
        """The params key of its real root: data.<root_key>."""
        return f"{self.root}_root"

    def existing_root(self, params: Params) -> Path:
        """`root_of`, a folder that is there; else a one-line DataError saying how to get it."""
        root = self.root_of(params)
        if not root.is_dir():
            if params.data.source == "real":
                hint = f"set data.{self.root_key} to your {self.title} folder"
            else:  # the generate stage writes the layout of data.dataset
                hint = f"run the generate stage first (dvc repro generate, with data.dataset: {self.name})"
            raise DataError(f"{root}: {self.title} dataset root not found; {hint}")
        return root

    def root_of(self, params: Params) -> Path:
        """Its root for `params`: the real one (data.<root>_root), or the synthetic twin's."""
        root = params.raw_root(self.root)
        if root is None:
            raise ParamsError(
                f"data.{self.root_key}: not set, but data.source is 'real' and the {self.title} root is needed "
                f"(--set data.{self.root_key}=/path/to/it)"
            )
        return root
