"""Output directories that appear whole or not at all, and the checksums that describe them.

An export is written into a temporary sibling of the target (same filesystem, so the final rename is
atomic) and moved into place only when every file is written and verified. Until then the target is
untouched: a failure, Ctrl-C or ``kill`` leaves it as it was. On failure or Ctrl-C/SIGTERM the
temporary directory is removed; only ``kill -9`` can leave one behind, named ``.<target>.s2g-tmp-*``.

Overwriting replaces only an empty directory or a previous s2g export (one with our ``manifest.json``),
so a mistyped ``--out ~ --overwrite`` cannot delete a home directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from s2g_deploy.errors import InputError, VerificationError

MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"  # an export directory's files
DENSE_FILE = "dense.safetensors"
CARD_FILE = "model_card.md"
SHA256SUMS = "SHA256SUMS"
MANIFEST_FORMAT = "s2g_deploy.export"
RELEASE = "release.json"
RELEASE_FORMAT = "s2g_deploy.release"
RENDERED_FORMAT = "s2g_deploy.rendered"  # s2g data render
_TMP_MARK = ".s2g-tmp-"


def check_target(out: str | os.PathLike, overwrite: bool, replaces: tuple[str, ...] = (MANIFEST_FORMAT,)) -> Path:
    """Refuse an output directory we may not write; returns it as a Path. Raises :class:`InputError`.

    ``--overwrite`` replaces only an empty directory or an output of the same kind (``replaces``: the
    formats of exports, releases or rendered data), so an export can never delete a render.
    """
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError(f"output {out} exists and is not a directory")
        if any(out.iterdir()):
            if not overwrite:
                raise InputError(f"output directory {out} is not empty; pass --overwrite to replace it")
            found = _format_of(out / MANIFEST) or _format_of(out / RELEASE)
            if found not in replaces:
                what = {MANIFEST_FORMAT: "an export", RELEASE_FORMAT: "a release", RENDERED_FORMAT: "rendered data"}
                wanted = " or ".join(what[f] for f in replaces)
                kind = f"it holds {what[found]}" if found in what else f"not {wanted} written by s2g"
                raise InputError(
                    f"refusing to overwrite {out}: {kind}; --overwrite replaces only {wanted}; choose an empty or "
                    "new directory"
                )
            foreign = foreign_files(out)
            if foreign:
                shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
                raise InputError(
                    f"refusing to overwrite {out}: it holds files s2g did not write ({shown}); move them away "
                    "or choose another directory"
                )
    parent = _existing_ancestor(out.absolute().parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the output {out}: {parent} is not writable")
    return out


def foreign_files(directory: Path) -> list[str]:
    """Files in an s2g output directory that s2g did not write (relative paths, sorted).

    What s2g wrote is what its ``SHA256SUMS`` lists (exports, releases) or its manifest names (rendered
    data); ``--overwrite`` must never delete anything else.
    """
    ours = {SHA256SUMS}
    sums = directory / SHA256SUMS
    if sums.is_file():
        ours |= {line.split("  ", 1)[1] for line in sums.read_text(encoding="utf-8").splitlines() if "  " in line}
    if _format_of(directory / MANIFEST) == RENDERED_FORMAT:
        doc = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        names = [*doc.get("stems", []), "mixture"]
        ours |= {MANIFEST} | {f"{t['name']}/{s}.wav" for t in doc.get("tracks", []) for s in names}
    found = (p.relative_to(directory).as_posix() for p in directory.rglob("*") if not p.is_dir())
    return sorted(f for f in found if f not in ours)


def is_export_dir(path: Path) -> bool:
    return _format_of(path / MANIFEST) == MANIFEST_FORMAT


def is_release_dir(path: Path) -> bool:
    """A directory ``s2g release`` wrote (its ``release.json``); ``--overwrite`` may replace it."""
    return _format_of(path / RELEASE) == RELEASE_FORMAT


def _format_of(document: Path) -> str | None:
    try:
        return json.loads(document.read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None


class StagedDirectory:
    """``with StagedDirectory(out, overwrite) as staging: ...write into staging.path...; staging.commit()``.

    Leaving the block without :meth:`commit` (an error, Ctrl-C, SIGTERM) deletes everything it created.
    """

    def __init__(
        self, target: str | os.PathLike, overwrite: bool = False, replaces: tuple[str, ...] = (MANIFEST_FORMAT,)
    ):
        self.target = Path(target)
        self.overwrite = overwrite
        self.replaces = replaces
        self.path: Path | None = None
        self._created: list[Path] = []  # parent directories we made, deepest last
        self._committed = False
        self._old_handler = None
        self._old_int_handler = None
        self._interrupted = False  # a Ctrl-C seen while staging, even one a C++ extension swallowed

    def __enter__(self) -> StagedDirectory:
        check_target(self.target, self.overwrite, self.replaces)
        parent = self.target.absolute().parent
        missing = []
        for p in [parent, *parent.parents]:
            if p.exists():
                break
            missing.append(p)
        parent.mkdir(parents=True, exist_ok=True)
        self._created = list(reversed(missing))
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}{_TMP_MARK}", dir=parent))
        if threading.current_thread() is threading.main_thread():
            # SIGTERM would end the process without running cleanup; make it unwind like Ctrl-C
            self._old_handler = signal.signal(signal.SIGTERM, _raise_terminated)
            self._old_int_handler = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def _on_interrupt(self, signum, frame) -> None:
        # Some native code (onnxsim's C++, calling back into Python) catches the KeyboardInterrupt raised
        # inside it and carries on; remembering the signal lets commit() refuse to publish anyway.
        self._interrupted = True
        old = self._old_int_handler
        if callable(old):
            old(signum, frame)
        raise KeyboardInterrupt

    def commit(self) -> Path:
        """Move the finished directory into place (atomically replacing an allowed old one)."""
        assert self.path is not None and not self._committed
        if self._interrupted:
            raise KeyboardInterrupt
        check_target(self.target, self.overwrite, self.replaces)  # the world may have changed while we worked
        umask = os.umask(0)
        os.umask(umask)
        self.path.chmod(0o777 & ~umask)  # mkdtemp made it private
        target = self.target
        if target.is_dir() and any(target.iterdir()):
            if _exchange(self.path, target):  # atomic swap: the target is never missing
                shutil.rmtree(self.path, ignore_errors=True)  # now holds the old export
            else:  # two renames; the old export is restored if the second fails
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.s2g-old-", dir=self.path.parent))
                os.replace(target, old / "d")
                try:
                    os.replace(self.path, target)
                except BaseException:
                    os.replace(old / "d", target)
                    raise
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, target)  # replaces a missing or empty directory atomically
        self._committed = True
        return target

    def __exit__(self, *exc) -> None:
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
        if self._old_int_handler is not None:
            signal.signal(signal.SIGINT, self._old_int_handler)
        if not self._committed and self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            for p in reversed(self._created):
                with contextlib.suppress(OSError):
                    p.rmdir()


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an exception so ``finally`` blocks run (handled like Ctrl-C)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _existing_ancestor(path: Path) -> Path:
    for p in [path, *path.parents]:
        if p.exists():
            return p
    return Path("/")


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"output file {path} exists; pass --overwrite to replace it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}{_TMP_MARK}", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | os.PathLike, document: Any) -> None:
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def write_sha256sums(directory: str | os.PathLike, recursive: bool = False) -> Path:
    """``SHA256SUMS`` over every other file in ``directory``, in name order, as ``sha256sum`` writes it.

    ``recursive``: also the files in its subdirectories, as relative paths (``phone/model.onnx``), so one
    ``sha256sum -c`` at the top checks a whole release.
    """
    directory = Path(directory)
    files = directory.rglob("*") if recursive else directory.iterdir()
    names = sorted(p.relative_to(directory).as_posix() for p in files if p.is_file())
    names = [n for n in names if n != SHA256SUMS]
    for name in names:
        if "\n" in name or "\\" in name:
            raise ValueError(f"file name {name!r} cannot be written to {SHA256SUMS}")
    lines = "".join(f"{sha256_file(directory / n)}  {n}\n" for n in names)
    path = directory / SHA256SUMS
    with atomic_file(path, overwrite=True) as tmp:  # a reader never sees half a file
        tmp.write_text(lines, encoding="utf-8")
    return path


def verify_sha256sums(directory: str | os.PathLike) -> list[str]:
    """Names in ``SHA256SUMS`` whose file is missing or differs (empty: all good)."""
    directory = Path(directory)
    bad = []
    for line in (directory / SHA256SUMS).read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        f = directory / name
        if not f.is_file() or sha256_file(f) != digest:
            bad.append(name)
    return bad


def update_manifest(directory: str | os.PathLike, update: Callable[[dict], None]) -> dict:
    """Apply ``update`` to an export's ``manifest.json`` in place; rewrite it and ``SHA256SUMS`` atomically.

    The directory must verify against its ``SHA256SUMS`` first: rewriting the sums over a file that
    changed since the export would certify it. Raises :class:`VerificationError` (exit 4) if it does not,
    :class:`InputError` if ``directory`` is not an export. Concurrent updates of one directory are
    serialised by a lock on the directory itself (no lock file, which would join the checksums).
    """
    directory = Path(directory)
    if not is_export_dir(directory):
        raise InputError(f"{directory}: not an s2g export directory (no s2g {MANIFEST})")
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        bad = verify_sha256sums(directory)
        if bad:
            raise VerificationError(
                f"{directory}: {', '.join(bad)} no longer match {SHA256SUMS}; refusing to update the manifest "
                "(re-export the directory)"
            )
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        update(manifest)
        with atomic_file(directory / MANIFEST, overwrite=True) as tmp:
            write_json(tmp, manifest)
        write_sha256sums(directory)
    finally:
        os.close(fd)  # releases the lock
    return manifest
