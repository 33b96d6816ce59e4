"""The embedded default benchmark: a synthetic referring-segmentation dataset.

Writes a small dataset in exactly the A2D Sentences on-disk layout (`params.raw_root("a2d")`) and
a J-HMDB Sentences twin (`params.raw_root("jhmdb")`, test only), so the real readers, extraction and
everything downstream run unchanged on it. Everything is a deterministic function of
`data.synthetic` (seed, sizes, resolution). Run it as `python -m core.data.synthetic`.

Pipeline: `plan_dataset` (pure: scenes + sentences, no pixels) -> `render_scene` (numpy:
frames + per-instance visible masks) -> the layout writers of `core.data.a2d` and
`core.data.jhmdb`. Modules:
- `scene`: the dataclasses (Actor, Sentence, Scene, DatasetPlan)
- `grammar`: the attribute vocabulary and the sentences (wording, parsing, matching)
- `plan`: scene and dataset planning (what the benchmark tests is described there)
- `render`: the shape table, background, motion streaks and `render_scene`
- `write`: the A2D / J-HMDB layouts, the summary and `generate` (the twin of data.dataset,
  core.data.registry; atomic folder publishing)
- `twins`: the same scenes in the Ref-YouTube-VOS and MeViS layouts (`generate_ytvos`,
  `generate_mevis`), with a valid split (`plan.plan_valid`) and, for MeViS, multi-object
  group sentences ("the two red balls", `plan.plan_groups`)
- `__main__`: the command line
"""

from core.data.synthetic.grammar import (
    ATTRIBUTE_TYPES,
    CLASSES,
    COLOURS,
    MOTIONS,
    SIZES,
    GroupSentence,
    describe_group,
    matching_actors,
    parse_group_sentence,
    parse_sentence,
    word_group_sentence,
    word_sentence,
)
from core.data.synthetic.plan import (
    GROUP_FRACTION,
    MIN_VISIBLE_OTHER,
    MIN_VISIBLE_REFERENT,
    annotated_indices,
    group_candidates,
    plan_dataset,
    plan_groups,
    plan_valid,
)
from core.data.synthetic.render import SHAPES, half_extent, render_scene, shape_mask
from core.data.synthetic.scene import Actor, DatasetPlan, Scene, Sentence
from core.data.synthetic.twins import (
    generate_mevis,
    generate_ytvos,
    mevis_groups,
    mevis_objects,
    mevis_splits,
    write_mevis,
    write_ytvos,
)
from core.data.synthetic.write import generate, summarize, write_a2d, write_jhmdb

__all__ = [
    "ATTRIBUTE_TYPES",
    "CLASSES",
    "COLOURS",
    "MOTIONS",
    "SIZES",
    "GroupSentence",
    "describe_group",
    "matching_actors",
    "parse_group_sentence",
    "parse_sentence",
    "word_group_sentence",
    "word_sentence",
    "GROUP_FRACTION",
    "MIN_VISIBLE_OTHER",
    "MIN_VISIBLE_REFERENT",
    "annotated_indices",
    "group_candidates",
    "plan_dataset",
    "plan_groups",
    "plan_valid",
    "SHAPES",
    "half_extent",
    "render_scene",
    "shape_mask",
    "Actor",
    "DatasetPlan",
    "Scene",
    "Sentence",
    "generate",
    "summarize",
    "write_a2d",
    "write_jhmdb",
    "generate_mevis",
    "generate_ytvos",
    "mevis_groups",
    "mevis_objects",
    "mevis_splits",
    "write_mevis",
    "write_ytvos",
]
