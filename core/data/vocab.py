"""Word vocabulary for the one-hot text encoder (docs/method.md, 'Architecture').

Built from the training sentences only: the `vocab_size - 1` most frequent words plus
`<unk>` (paper: 1000 = 999 words + <unk>); `<pad>` is extra and masked, never counted.
Ids: <pad> = 0, <unk> = 1, words from 2 in order of frequency (ties alphabetical, so the
vocabulary is deterministic).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from core.errors import DataError
from core.io import write_json

PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z0-9]+")
_FLIP = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost"}


def tokenize(text: str) -> list[str]:
    """Lower-case words; punctuation is dropped."""
    return _WORD.findall(text.lower())


def flip_words(words: list[str]) -> list[str]:
    """Swap left/right words: a horizontally flipped frame keeps its sentence true."""
    return [_FLIP.get(w, w) for w in words]


@dataclass(frozen=True)
class Vocab:
    words: tuple[str, ...]  # index i -> id i + 2

    @classmethod
    def build(cls, sentences: Iterable[str], size: int) -> "Vocab":
        counts = Counter(w for s in sentences for w in tokenize(s))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls(tuple(w for w, _ in ranked[: max(size - 1, 0)]))

    @property
    def num_ids(self) -> int:
        """Ids in use including <pad> and <unk> (the one-hot width is vocab_size + 1)."""
        return len(self.words) + 2

    def encode(self, words: list[str], max_tokens: int) -> list[int]:
        index = self._index()
        return [index.get(w, UNK) for w in words[:max_tokens]]

    def _index(self) -> dict[str, int]:
        cached = self.__dict__.get("_idx")
        if cached is None:
            cached = {w: i + 2 for i, w in enumerate(self.words)}
            object.__setattr__(self, "_idx", cached)
        return cached

    def save(self, path: Path) -> None:
        write_json(path, {"pad": PAD, "unk": UNK, "words": list(self.words)})

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        try:
            data = json.loads(Path(path).read_text())
            return cls(tuple(data["words"]))
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"{path}: cannot read vocabulary ({err}); rerun extraction") from None
