"""core.checkpoint: round trips, byte-stable files, one-line errors."""

import torch

from core.checkpoint import load_checkpoint, save_checkpoint
from core.errors import UserError
from core.io import file_digest


def test_round_trip_keeps_every_tensor_and_value(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(2)}, "epoch": 3, "history": [{"loss": 0.5}]}
    save_checkpoint(tmp_path / "ck.pt", state)
    back = load_checkpoint(tmp_path / "ck.pt")
    assert back["epoch"] == 3 and back["history"] == [{"loss": 0.5}]
    assert all(torch.equal(back["model"][k], v) for k, v in state["model"].items())
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_the_same_state_gives_the_same_bytes_under_any_name(tmp_path):
    """Run identities hash the start-weights file: equal weights must be an equal file
    (torch.save alone names its archive after the random temp file of the atomic write)."""
    state = {"conv1.weight": torch.randn(4, 3, generator=torch.Generator().manual_seed(0))}
    save_checkpoint(tmp_path / "a.pt", state)
    save_checkpoint(tmp_path / "other-name.pt", state)
    assert file_digest(tmp_path / "a.pt") == file_digest(tmp_path / "other-name.pt")
    save_checkpoint(tmp_path / "c.pt", {"conv1.weight": state["conv1.weight"] + 1})
    assert file_digest(tmp_path / "c.pt") != file_digest(tmp_path / "a.pt")


def test_a_foreign_file_is_a_one_line_error_naming_it(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    try:
        load_checkpoint(bad)
    except UserError as err:
        assert str(bad) in str(err) and "\n" not in str(err) and "--force" in str(err)
    else:
        raise AssertionError("no error")
