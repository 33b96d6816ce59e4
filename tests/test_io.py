"""core/io.py: atomic files and folders, with the permissions a plain open() / mkdir() gives."""

from __future__ import annotations

import os
import stat

import pytest

from core.io import atomic_path, staged_dir, write_json


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_an_atomic_file_gets_the_mode_of_a_plain_open(tmp_path, umask_022):
    write_json(tmp_path / "a.json", {"x": 1})
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644  # not mkstemp's 0600
    with staged_dir(tmp_path / "folder") as tmp:
        (tmp / "f").write_text("y")
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]
