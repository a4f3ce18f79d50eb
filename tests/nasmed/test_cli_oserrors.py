"""The file system's refusals become one line naming the path; other errors stay bugs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from decathlon.paths import named_os_error, why_unusable
from nasmed.cli.oserrors import describe_os_error, is_user_os_error


def _err(code: int, path: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), path) if path else OSError(code, os.strerror(code))


def test_a_temporary_file_is_reported_under_its_target() -> None:
    exc = _err(errno.EROFS, "/data/run/.model.pt.abc123.tmp")
    assert is_user_os_error(exc)
    assert describe_os_error(exc).startswith("/data/run/model.pt: read-only file system; ")


def test_a_wrapped_write_error_counts_but_a_deeper_chain_does_not() -> None:
    try:
        try:
            raise _err(errno.ENOSPC)
        except OSError as inner:
            raise RuntimeError("unexpected pos 704 vs 598") from inner
    except RuntimeError as wrapped:
        assert is_user_os_error(wrapped)
        assert describe_os_error(wrapped).startswith("no space left on device")
        deeper = ValueError("a bug")
        deeper.__context__ = wrapped
        assert not is_user_os_error(deeper)
    assert not is_user_os_error(KeyError("supernet"))
    assert not is_user_os_error(OSError("no errno"))


def test_named_os_error_gives_nameless_errors_a_file() -> None:
    short = OSError("28314 requested and 8160 written")  # numpy's short write
    named = named_os_error(short, "/w/cache/a.npy")
    assert named is not None and named.errno == errno.ENOSPC and named.filename == "/w/cache/a.npy"
    assert named_os_error(_err(errno.EACCES, "/x"), "/y") is None  # already named
    assert named_os_error(ValueError("x"), "/y") is None


def test_why_unusable(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    assert why_unusable(a) == "too many levels of symbolic links (a symlink loop)"
    (tmp_path / "c").symlink_to(tmp_path / "nowhere")
    assert why_unusable(tmp_path / "c").startswith("broken symbolic link")
    assert why_unusable(tmp_path / "missing", "input") == "input not found"
    assert why_unusable(tmp_path) == "is a folder, not a file"
    f = tmp_path / "f"
    f.write_text("x")
    assert why_unusable(f / "x") == "a part of this path is a file, not a folder"


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.ELOOP, errno.ENOTDIR])
def test_every_line_is_one_line(code: int) -> None:
    line = describe_os_error(_err(code, "/p"))
    assert "\n" not in line and line.startswith("/p: ")
