"""Atomic writes: a temporary sibling, fsync, then ``os.replace``. A killed process never
leaves a half-written file or folder at the destination; the temporary sibling it leaves (``.NAME.HOST-PID-*.tmp``)
is removed by the next write to that destination once that process no longer runs."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary file path next to ``dest``; on success it replaces ``dest``.

    On error the temporary file is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep(dest)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(dest), suffix=suffix + ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    mode = 0o666 & ~_umask()  # mkstemp makes 0600; the result gets the usual mode
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)  # after the body: some writers (safetensors' save_file) recreate the file 0600
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``dest``; on success it is renamed to ``dest``.

    With ``overwrite`` an existing ``dest`` is replaced: swapped with the new folder in one
    ``renameat2(RENAME_EXCHANGE)`` where the kernel and filesystem allow it, so ``dest`` is always
    either the old folder or the new one (a process killed at any moment never leaves it absent);
    elsewhere it is moved aside, then replaced.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep(dest)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(dest), suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            if not overwrite:
                raise FileExistsError(f"{dest} already exists")
            if _exchange(tmp, dest):  # tmp now holds the old folder
                _fsync_dir(dest.parent)
                shutil.rmtree(tmp, ignore_errors=True)
                return
            old = dest.with_name(f"{_tmp_prefix(dest)}old.tmp")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16] or "host"


def _tmp_prefix(dest: Path) -> str:
    """``.NAME.HOST-PID-``: a temporary sibling says which process made it."""
    return f".{dest.name}.{_host()}-{os.getpid()}-"


def _sweep(dest: Path) -> None:
    """Remove the temporary siblings of ``dest`` left by processes of this host that no longer run (a
    killed writer cannot clean up after itself)."""
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.{re.escape(_host())}-(\d+)-.*\.tmp")
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or _alive(int(m.group(1))):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it runs under another user
        return True
    return True


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``); False where that is unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # glibc < 2.28 or another libc
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False  # the kernel or the filesystem cannot exchange: fall back to two renames
    raise OSError(err, os.strerror(err), str(b))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
