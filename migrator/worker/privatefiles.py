"""Owner-only files and directories: 0600 and 0700, whatever the umask.

Everything the tool writes (backups, dumps and their manifests and ``.partial``
files, reports, snapshot files) holds user data or describes it, so it is
readable by its owner only (DESIGN.md, "Safety rules"). The mode is given when
the file is created, so there is no moment at which it is readable by others, and
set again on the open descriptor, which defeats both a umask that would strip
owner bits and a permissive file that was already there.

Standard library only: the worker (which writes dump files) and the host share it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Union

FILE_MODE = 0o600
DIR_MODE = 0o700

PathLike = Union[str, "os.PathLike[str]"]

_CREATE_FLAGS = {
    "w": os.O_CREAT | os.O_TRUNC,
    "x": os.O_CREAT | os.O_EXCL,
    "a": os.O_CREAT | os.O_APPEND,
}


def open_private(
    path: PathLike,
    mode: str = "w",
    *,
    encoding: str | None = None,
    buffering: int = -1,
    keep_mode: bool = False,
) -> IO[Any]:
    """``open(path, mode)`` for writing, the file owner-only (0600).

    Args:
        path: The file.
        mode: ``w``, ``x`` or ``a``, with ``b`` and/or ``+`` as for ``open``.
        encoding: For text modes (default UTF-8).
        buffering: As for ``open``.
        keep_mode: Leave the mode of a file that already exists (e.g. a CI
            runner's ``$GITHUB_STEP_SUMMARY``); a file this creates is still 0600.

    Returns:
        The open file object.

    Raises:
        ValueError: ``mode`` does not write.
        OSError: As ``open`` would (``FileExistsError`` for ``x``).
    """
    kind = mode.replace("b", "").replace("t", "").replace("+", "")
    if kind not in _CREATE_FLAGS:
        raise ValueError(f"open_private writes files; mode {mode!r} does not")
    flags = _CREATE_FLAGS[kind] | (os.O_RDWR if "+" in mode else os.O_WRONLY)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        if not keep_mode:
            _fchmod(fd, path)
        if "b" not in mode and encoding is None:
            encoding = "utf-8"
        # The descriptor is open already: "x" would mean nothing more to fdopen.
        return os.fdopen(fd, mode.replace("x", "w"), buffering=buffering, encoding=encoding)
    except BaseException:
        os.close(fd)
        raise


def _fchmod(fd: int, path: PathLike) -> None:
    if hasattr(os, "fchmod"):
        os.fchmod(fd, FILE_MODE)
    else:  # pragma: no cover - Windows before Python 3.13
        os.chmod(path, FILE_MODE)


def write_private(path: PathLike, data: str | bytes, *, mode: str = "w") -> None:
    """Write ``data`` (text as UTF-8) to ``path``, owner-only.

    Args:
        path: The file.
        data: Its whole content.
        mode: ``w`` (replace) or ``x`` (refuse an existing file).
    """
    if isinstance(data, bytes):
        with open_private(path, mode + "b") as fh:
            fh.write(data)
    else:
        with open_private(path, mode) as fh:
            fh.write(data)


def private_dir(path: PathLike, *, own_existing: bool = False) -> Path:
    """``mkdir -p path``: every directory it creates is owner-only (0700).

    Directories that already exist keep their mode (a report written under the
    working directory does not change it), unless ``own_existing`` asks that
    ``path`` itself (not its parents) be made owner-only too, e.g. the empty
    directory a backup is about to fill.

    Args:
        path: The directory.
        own_existing: Also ``chmod 0700`` ``path`` when it existed already.

    Returns:
        ``path`` as a ``Path``.
    """
    target = Path(path)
    missing: list[Path] = []
    probe = target
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # made by someone else meanwhile: not ours to chmod
        os.chmod(directory, DIR_MODE)  # a umask may have taken owner bits
    if own_existing and not missing:
        os.chmod(target, DIR_MODE)
    return target


def private_parent(path: PathLike) -> Path:
    """Create the missing directories above the file ``path`` (0700); returns ``path``."""
    private_dir(Path(path).parent)
    return Path(path)
