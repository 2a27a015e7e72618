"""Files the tool writes: a failure is one line naming the path, and no partial file stays.

A read-only path, a full disk or a missing permission while writing a backup, a
dump or a report is an environment problem (exit 3), not a bug with a traceback
(DESIGN.md, "Safety rules"). :func:`writing` wraps the code that writes; it
removes what that code had started and raises :class:`~migrator.errors.OutputError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from migrator.errors import OutputError, WorkerError

#: What each errno means to someone choosing where the tool writes.
REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "a directory on the path does not exist",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.EISDIR: "it is a directory",
    errno.EFBIG: "the file is too large for the file system",
}
_HINTS = {
    errno.ENOSPC: "free some space or write to another disk",
    errno.EDQUOT: "free some space or write to another disk",
    errno.EROFS: "write to a writable path",
    errno.EACCES: "write to a directory this user may write to",
    errno.EPERM: "write to a directory this user may write to",
}
#: Worker error kinds that are an ``OSError`` of the worker's own file writes.
OS_ERROR_KINDS = frozenset(
    {
        "OSError",
        "PermissionError",
        "FileNotFoundError",
        "FileExistsError",
        "IsADirectoryError",
        "NotADirectoryError",
    }
)
_ERRNO_RE = re.compile(r"\[Errno (\d+)\]")


def output_error(path: os.PathLike[str] | str, exc: OSError) -> OutputError:
    """The one-line error for ``exc`` raised while writing ``path``."""
    code = exc.errno or 0
    reason = REASONS.get(code) or exc.strerror or str(exc) or type(exc).__name__
    return OutputError(
        f"cannot write {os.fspath(path)}: {reason}; nothing was left there.",
        hint=_HINTS.get(code, "choose another path"),
    )


def worker_output_error(path: os.PathLike[str] | str, exc: WorkerError) -> OutputError | None:
    """The :class:`OutputError` a worker's failure means when it could not write ``path``."""
    if exc.kind not in OS_ERROR_KINDS:
        return None
    found = _ERRNO_RE.search(exc.message)
    code = int(found.group(1)) if found else 0
    return output_error(path, OSError(code, REASONS.get(code) or exc.message.split(": ")[-1]))


def remove_quietly(paths: Iterable[os.PathLike[str] | str]) -> None:
    """Remove each file or directory tree that exists; a failure to remove is ignored."""
    for raw in paths:
        path = Path(raw)
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def writing(
    path: os.PathLike[str] | str,
    *,
    remove: Iterable[os.PathLike[str] | str] | None = None,
) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into :class:`OutputError`, removing partial files.

    Args:
        path: What is being written (named in the message; removed on failure when
            ``remove`` is None).
        remove: What to remove on failure instead (``()``: nothing, e.g. a file
            appended to that belongs to someone else).

    Raises:
        OutputError: An ``OSError`` was raised inside (exit 3).
    """
    try:
        yield
    except OSError as exc:
        remove_quietly([path] if remove is None else remove)
        raise output_error(path, exc) from exc
