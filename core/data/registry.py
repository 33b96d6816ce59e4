"""The datasets the suite reads, registered by name: `data.dataset` picks one (core.data.spec).

    a2d    A2D Sentences train/test, with J-HMDB Sentences (data.jhmdb_root, optional) as the
           zero-shot `jhmdb` split; scored as the CVLS paper scores it
    ytvos  Ref-YouTube-VOS train, an offline hold-out of it as `test` (data.offline_test_fraction,
           data.offline_seed: core.data.ytvos.offline_split); J&F; `valid` exported for its server
    mevis  MeViS train, valid_u as `test`; J&F; `valid` exported for its server

Adding a dataset: a module with its reader (and the writer of its synthetic twin), and one entry
below. Its root key `data.<root>_root` is a params key: params.yaml, core.sections.DataParams,
core.identity.OPERATIONAL and dvc.yaml's extract stage list it (tests/test_registry.py checks).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.data import mevis, ytvos
from core.data.a2d import read_a2d
from core.data.jhmdb import read_jhmdb
from core.data.spec import A2D_STYLE, DAVIS, DatasetSpec, ReportText, Submission, Unions
from core.data.synthetic.twins import write_mevis_twin, write_ytvos_twin
from core.data.synthetic.write import write_a2d_twin
from core.data.types import SkipLedger, Video
from core.errors import DataError

if TYPE_CHECKING:
    from core.config import Params


def _a2d(params: Params, root: Path, ledger: SkipLedger, unions: Unions) -> Iterator[tuple[str, Video]]:
    for v in read_a2d(root, ledger):
        yield v.split, v
    jroot = params.raw_root("jhmdb")
    if jroot is not None:
        if not jroot.is_dir():
            raise DataError(f"{jroot}: J-HMDB dataset root not found (data.jhmdb_root)")
        for v in read_jhmdb(jroot, ledger):
            yield "jhmdb", v


def ytvos_test_videos(params: Params, root: Path) -> set[str]:
    """The Ref-YouTube-VOS train videos held out as the offline test split: `offline_split` over
    every video LISTED in meta_expressions/train (not only the usable ones, so a video skipped
    for a quirk or an allowed problem never moves another video between train and test)."""
    listed = ytvos.listed_videos(root)
    return ytvos.offline_split(listed, params.data.offline_test_fraction, params.data.offline_seed)


def _ytvos(params: Params, root: Path, ledger: SkipLedger, unions: Unions) -> Iterator[tuple[str, Video]]:
    held_out = ytvos_test_videos(params, root)
    for v in ytvos.read_ytvos(root, ledger):
        yield ("test" if v.video_id in held_out else "train"), v


def _ytvos_test_split(params: Params, root: Path) -> dict[str, Any]:
    return {
        "kind": "offline hold-out of train (core.data.ytvos.offline_split over the listed train videos)",
        "fraction": params.data.offline_test_fraction,
        "seed": params.data.offline_seed,
        "held_out_listed_videos": len(ytvos_test_videos(params, root)),
    }


def _mevis(params: Params, root: Path, ledger: SkipLedger, unions: Unions) -> Iterator[tuple[str, Video]]:
    for split in mevis.MASKED_SPLITS:
        for v in mevis.read_mevis(root, ledger, split, unions=unions):
            yield v.split, v  # train -> train, valid_u -> test (core.data.mevis.SPLITS)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="a2d",
            title="A2D Sentences",
            root="a2d",
            extra_roots=("jhmdb",),
            read=_a2d,
            write_twin=write_a2d_twin,
            metrics=A2D_STYLE,
            report=ReportText(
                test_split="A2D-format",
                test_short="A2D-format test",
                real_strata_note=(
                    "Real A2D Sentences has no class labels in its sentence h5 files, so no pair can be labelled by "
                    "distractor or attribute: on real data the strata are unavailable."
                ),
                context="cvls",
            ),
        ),
        DatasetSpec(
            name="ytvos",
            title="Ref-YouTube-VOS",
            root="ytvos",
            read=_ytvos,
            write_twin=write_ytvos_twin,
            metrics=DAVIS,
            report=ReportText(
                test_split="offline test split (held-out Ref-YouTube-VOS train videos)",
                test_short="offline test",
                real_strata_note=(
                    "Real Ref-YouTube-VOS has object categories (meta.json) but no attribute labels, so on real "
                    "data only the distractor strata can exist."
                ),
                context="lbdt4",
            ),
            test_split=_ytvos_test_split,
            submission=Submission(
                "valid", ytvos.read_ytvos_valid, ytvos.meta_expressions_path, ytvos.frames_dir, ytvos.ANNOTATION_DIR
            ),
        ),
        DatasetSpec(
            name="mevis",
            title="MeViS",
            root="mevis",
            read=_mevis,
            write_twin=write_mevis_twin,
            metrics=DAVIS,
            report=ReportText(
                test_split="MeViS valid_u",
                test_short="valid_u",
                real_strata_note=(
                    "Real MeViS gives no per-object category or attribute, so no pair can be labelled by distractor "
                    "or attribute: on real data the strata are unavailable."
                ),
            ),
            test_split=lambda params, root: {"kind": "valid_u"},
            unions=True,
            submission=Submission("valid", mevis.read_mevis_valid, mevis.meta_path, mevis.frames_dir, None),
        ),
    )
}


def names() -> tuple[str, ...]:
    """The registered values of data.dataset."""
    return tuple(DATASETS)


def get(name: str) -> DatasetSpec:
    """The spec registered as `name`."""
    if name not in DATASETS:
        raise KeyError(f"no dataset {name!r} is registered (core.data.registry: {', '.join(DATASETS)})")
    return DATASETS[name]
