"""Where a command may write: the rules every output path is checked against before anything is written.

A command writes only under its output path, follows no link out of it, never replaces something it did not
make unless asked (``overwrite=True``, ``--overwrite``), and refuses when the output is one of its inputs (or
inside or above one). A run directory is locked (``flock``, released by the OS on any exit, ``kill -9``
included) for the run's life, so a second process on it is refused instead of interleaving with the first.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

Input = str | os.PathLike | None


class OutputRefused(ValueError):
    """The output path is not one this command may write (the CLI answers with exit code 2)."""


class RunLocked(OSError):
    """Another process holds the run directory's lock."""


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(path))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_not_input(out: str | os.PathLike, inputs: Mapping[str, Input] | Iterable[tuple[str, Input]],
                    flag: str = "--out") -> None:
    """Refuse an output that is one of the inputs, inside one, or holds one (links resolved).

    inputs: name -> path (None: not given), as a mapping or as pairs (several inputs of one name)."""
    target = _real(out)
    for name, path in (inputs.items() if isinstance(inputs, Mapping) else inputs):
        if path is None:
            continue
        source = _real(path)
        if _within(target, source) or _within(source, target):
            relation = ("is" if target == source else "is inside" if _within(target, source) else "holds")
            raise OutputRefused(f"{flag} {out}: {relation} the input {name} {path}; a command never writes over "
                                f"its inputs: choose another {flag}")


def foreign_entries(directory: str | os.PathLike, made: Iterable[str] | None = None) -> list[str]:
    """Names in ``directory`` outside ``made`` (the names the command writes; None: every name is foreign)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    made = set(made or ())
    return sorted(p.name for p in directory.iterdir() if p.name not in made)


def check_fresh_dir(out: str | os.PathLike, *, overwrite: bool, made: Iterable[str] | None = None,
                    flag: str = "--out") -> None:
    """Refuse a folder that holds anything besides ``made`` (every entry when None), unless ``overwrite``."""
    foreign = foreign_entries(out, made)
    if foreign and not overwrite:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise OutputRefused(f"{flag} {out}: already holds files this command did not make ({shown}); choose an "
                            f"empty or new folder, or pass --overwrite to write over them")


def check_no_links(out: str | os.PathLike, flag: str = "--out") -> None:
    """Refuse a folder with a symbolic link anywhere inside it: writing through one would leave the folder."""
    out = Path(out)
    if not out.is_dir():
        return
    for root, dirs, files in os.walk(out, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(root) / name
            if path.is_symlink():
                raise OutputRefused(f"{flag} {out}: {path} is a symbolic link; a command follows no link out of "
                                    f"its output folder (remove the link)")


def check_file_target(out: str | os.PathLike, *, overwrite: bool, made_here=None, flag: str = "--out",
                      kind: str | None = None) -> None:
    """An existing file at ``out`` is replaced only when ``made_here(path)`` says this command wrote it, or
    with ``overwrite``; a link there is never written through (nor replaced without ``overwrite``). ``kind``
    names what ``made_here`` accepts, for the refusal ("is not <kind>")."""
    out = Path(out)
    if out.is_symlink():
        if not overwrite:
            raise OutputRefused(f"{flag} {out}: is a symbolic link; pass --overwrite to replace the link "
                                f"(its target is left alone)")
        return
    if out.exists() and not overwrite and not (made_here is not None and made_here(out)):
        what = f"is not {kind}" if kind else "was not written by this command"
        raise OutputRefused(f"{flag} {out}: exists and {what}; choose another {flag}, or pass --overwrite to "
                            f"replace it")


@contextlib.contextmanager
def removed_if_failed(path: str | os.PathLike) -> Iterator[None]:
    """On failure, remove the folders of ``path`` (it included) that did not exist before the block, where they
    are still empty: a command that fails leaves no empty folder behind; one that wrote something keeps it."""
    path = Path(os.path.abspath(path))
    created = []
    while not path.exists() and path != path.parent:
        created.append(path)
        path = path.parent
    try:
        yield
    except RunLocked:
        raise  # the folder is another process's run: not ours to remove
    except BaseException:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or gone): keep it and everything above it
        raise


def open_append(path: str | os.PathLike):
    """Open ``path`` for appending text without following a link at its last component."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    return os.fdopen(fd, "a")


@contextlib.contextmanager
def record_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of the record file ``path`` (export.json, eval results).

    Writers wait for each other (a record file is updated in a blink), so simultaneous commands lose no record.
    The lock is a small file beside the record (``.NAME.lock``, never a link), removed when the block ends; not
    the folder itself, which a running command may hold with `run_lock`.
    """
    path = Path(path)
    lock = path.parent / f".{path.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as e:
            raise OutputRefused(f"{lock}: cannot be used as the lock of {path.name} ({e.strerror}); move it away") \
                from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # the holder before us may have removed the file we waited on: lock the one at the path now
            if os.stat(lock, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        os.unlink(lock)  # while still holding it: a waiter on this file sees it gone and tries again
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def run_lock(directory: str | os.PathLike, flag: str = "--out") -> Iterator[None]:
    """Hold an exclusive OS lock on ``directory`` (which must exist) until the block ends.

    ``flock`` on the directory itself: no marker file to go stale, and the kernel drops the lock when the
    process dies, however it dies.
    """
    directory = Path(directory)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{flag} {directory}: another gandistill process is running in this folder; wait for "
                            f"it to finish, or choose another {flag}") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
