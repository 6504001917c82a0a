"""Files and output folders that never lose what the user had: atomic writes, staged folders.

Ground floor: imports nothing from leannet but the error type. Three promises:
- a file is replaced whole or not at all (temp file + rename), with the user's umask;
- an output folder that already holds something is replaced only with `force`, and only once the
  new content is complete (it is built in a staging folder beside it, then swapped in);
- a failed run leaves no partial output, and a crash mid-swap leaves a folder that the next
  `recover_dir` puts back, never nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from leannet.errors import LeannetError

PARTIAL = ".partial"  # suffix of the staging folder beside an output folder
OLD = ".old"  # suffix of a folder swapped out but not yet deleted
_RENAME_EXCHANGE = 2  # linux/fs.h


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def follow_umask(path: str | Path, folder: bool = False) -> None:
    """Give `path` the mode a plain open()/mkdir() would have given it (mkstemp uses 0600)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> Path:
    """Let `write(temp_path)` fill a temp file beside `path`, then rename it into place.

    Readers see the old file or the new one, never half of one; a failed write leaves nothing.
    The temp name keeps the suffix, so writers that pick a format by suffix still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        follow_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text to `path` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented JSON, atomically. NaN and infinity are refused (not JSON)."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False)
    except ValueError as err:
        raise LeannetError(f"refusing to write {path}: {err} (a result held NaN or infinity)") \
            from None
    return atomic_write_text(path, text + "\n")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system can't."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))


def replace_dir(new: Path, target: Path) -> None:
    """Put the complete folder `new` at `target`, deleting what was there only afterwards.

    With an atomic exchange there is no moment without a `target`; without one, the old folder
    is renamed to `.NAME.old` first, and `recover_dir` undoes a crash between the two renames.
    """
    if not target.exists():
        os.replace(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old content
        return
    old = target.with_name(f".{target.name}{OLD}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: str | Path) -> Path:
    """If a crash between two renames left no `target`, put the complete folder back."""
    target = Path(target)
    old = target.with_name(f".{target.name}{OLD}")
    if not target.exists() and old.is_dir():
        os.replace(old, target)
    return target


def staging_dir(target: Path) -> Path:
    """The folder beside `target` where its replacement is built (`.NAME.partial`)."""
    return target.with_name(f".{target.name}{PARTIAL}")


def check_result_file(path: str | Path, command: str, force: bool = False) -> Path:
    """A `result.json` that `command` may write: refused if present without `force`, and always
    refused when it records another command (a prune run's record is never clobbered by eval)."""
    path = Path(path)
    if not path.exists():
        return path
    try:
        owner = json.loads(path.read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        owner = None
    if owner != command:
        raise LeannetError(f"{path} is the record of {'a ' + repr(owner) if owner else 'another'} "
                           f"run; choose another output folder for `{command}`")
    if not force:
        raise LeannetError(f"{path} already exists; pass --force to replace it")
    return path


def check_out_dir(path: str | Path, force: bool = False) -> Path:
    """Refuse an output path that is a file, or a non-empty folder without `force`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LeannetError(f"output path {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise LeannetError(f"output folder {path} already exists and is not empty; "
                           "pass --force to replace it")
    return path


def prepare_out_dir(path: str | Path, force: bool = False) -> Path:
    """Create an output folder; refuse one that exists and is not empty unless `force`.

    Prefer `output_folder`, which also cleans up after a failure and replaces old output only
    at the end; this is for writers that add files beside existing ones on purpose.
    """
    path = check_out_dir(path, force)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def output_folder(path: str | Path, force: bool = False,
                  resume_marker: str | None = None) -> Iterator[Path]:
    """Yield the folder to write a run's output into, and make it `path` only on success.

    - `path` new or empty: written in place; removed again if the body fails.
    - `path` holds something: refused unless `force`; with it, the output is built in
      `.NAME.partial` and swapped in at the end, so the old output survives a failed or killed run.
    - `resume_marker` (e.g. "state.json"): continue an interrupted run in whichever of `path`
      or its staging folder holds that file.
    Ctrl-C keeps the partial folder (it can be resumed); any other failure removes it.
    """
    path = check_out_dir(path, force=True)
    staging = staging_dir(path)
    if resume_marker is not None:
        work = next((d for d in (path, staging) if (d / resume_marker).is_file()), None)
        if work is None:
            raise LeannetError(f"--resume: {path} holds no interrupted run ({resume_marker} "
                               "missing)")
        created = False
    else:
        check_out_dir(path, force)
        existed = path.is_dir() and any(path.iterdir())
        work = staging if existed else path
        if work == staging:
            shutil.rmtree(staging, ignore_errors=True)  # a leftover of our own earlier run
        created = not work.exists()
        work.mkdir(parents=True, exist_ok=True)
        if created:
            follow_umask(work, folder=True)
    try:
        yield work
    except KeyboardInterrupt:
        raise
    except BaseException:
        if work == staging or created:
            shutil.rmtree(work, ignore_errors=True)
        elif resume_marker is None:  # an empty folder the user made: leave it empty
            for child in work.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    if work == staging:
        replace_dir(staging, path)
