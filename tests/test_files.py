"""Every write is all-or-nothing: the old file survives a failed write, nothing is left beside it, and a new
file gets the mode a plain write would give."""

from __future__ import annotations

import os
import stat

import pytest

from jvae.base.files import WriteError, write_text, write_via


def test_a_write_replaces_the_file_whole_with_the_usual_mode(tmp_path):
    target = tmp_path / "out" / "report.json"
    write_text(target, "first")
    write_text(target, "second")
    assert target.read_text() == "second"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"good")

    def broken(temporary):
        temporary.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError, match="ckpt.pt: cannot write \\(no space left on device\\)"):
        write_via(target, broken)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_the_temporary_keeps_the_suffix_writers_read_their_format_from(tmp_path):
    seen = []
    write_via(
        tmp_path / "traversal.gif", lambda temporary: (seen.append(temporary), temporary.write_bytes(b"x"))
    )
    assert seen[0].suffix == ".gif" and seen[0].parent == tmp_path and seen[0].name.startswith(".traversal.")
    assert not seen[0].exists()
