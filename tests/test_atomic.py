import os

import pytest

from pgan.utils.atomic import atomic_open, atomic_write_text


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    path = tmp_path / "report.md"
    atomic_write_text(path, "v1")
    atomic_write_text(path, "v2")
    assert path.read_text() == "v2"
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.bin"
    atomic_write_text(path, "good")
    with pytest.raises(RuntimeError), atomic_open(path, "w") as fh:
        fh.write("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "good" and len(list(tmp_path.iterdir())) == 1
