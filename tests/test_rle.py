"""COCO RLE (core.data.rle), the mask format of MeViS's mask_dict.json: a 3x3 mask by hand."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.rle import decode_rle, encode_mask, rle_counts


def test_rle_hand_checked():
    # [[0 1 0], [0 1 0], [0 0 1]] column-major: 3 zeros, 2 ones, 3 zeros, 1 one. Each run is
    # chr(48 + 5-bit group): '3' '2' '3'; the 4th run is stored as its difference to the 2nd,
    # 1 - 2 = -1, i.e. 0b11111 (sign bit 0x10 set, no continuation) = 31 -> chr(79) = 'O'
    m = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 1]], bool)
    assert rle_counts("323O") == [3, 2, 3, 1]
    assert encode_mask(m) == {"size": [3, 3], "counts": "323O"}
    assert (decode_rle({"size": [3, 3], "counts": "323O"}) == m).all()
    # a run > 31 takes two characters: 33 = 1 + (1 << 5) -> 'Q' (1 | more 0x20) then '1'
    row = np.zeros((1, 40), bool)
    row[0, 33:] = True
    assert encode_mask(row) == {"size": [1, 40], "counts": "Q17"}
    assert rle_counts("Q17") == [33, 7]
    assert encode_mask(np.zeros((3, 3), bool)) is None
    for bad in ("8", "32", "323", "3 2"):  # wrong pixel total, or a character outside the alphabet
        with pytest.raises(ValueError):
            decode_rle({"size": [3, 3], "counts": bad})
