"""Intake: how the grader takes a learner's files, trusting nothing in the learner's folder.

Every way of grading goes through here: `grade`, `check --impl PATH` (in-process and
`--isolate`), nbgrader and Gradescope. A learner's folder is hostile input, so intake

- walks it from the learner's folder down, one folder at a time, through file descriptors
  opened with O_NOFOLLOW: a link is seen as a link and never followed, and nothing outside
  the learner's folder is ever read;
- opens a file only after lstat says it is a regular file (a named pipe would block, a
  device or a file of /proc would never end), and reads at most a bounded number of bytes;
- bounds the walk (depth, names looked at, files and bytes taken);
- turns every oddity into `Refused`, whose message tells the learner what to change. A
  refused learner is not graded: every check earns 0 with that message.

Links are refused outright, wherever they point (the reference in solutions/, a
classmate's folder, anywhere else): the stage folder, any folder between the learner's
folder and it, the stage's files and every file beside them.

This module imports neither torch nor the suites: the nbgrader config and the notebook's
kernel use it.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .course import Stage

SEARCH_DEPTH = 4  # folder levels below the learner's folder where the stage's files are looked for
TREE_DEPTH = 8  # folder levels below the stage folder that are taken
MAX_NAMES = 20_000  # names looked at in one learner's folder
MAX_FILES = 2_000  # files taken from the stage folder
MAX_FILE_BYTES = 16 << 20  # a larger file is left out (a larger stage file or module is refused)
MAX_TOTAL_BYTES = 64 << 20  # all files taken together
# Never searched for the stage's files: tools' folders, and the course's own solutions/.
NOT_SEARCHED = {"__pycache__", "__MACOSX", ".git", ".venv", "venv", "node_modules", "solutions", ".ipynb_checkpoints"}
TOOL_FOLDERS = {".git", ".venv", "venv", "node_modules", "__pycache__"}  # never looked into at all
# Never taken from the stage folder: caches, and files that hijack Python or pytest at start-up.
NOT_TAKEN = {"__pycache__", "conftest.py", "sitecustomize.py", "usercustomize.py"}
LINKS_MESSAGE = "Links are not accepted: hand in the files themselves, not links to them."
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


class Refused(Exception):
    """The learner's folder cannot be graded as it is; the message says why, in the learner's words."""


@dataclass(frozen=True)
class Taken:
    """What intake takes of one submission: the stage folder and the regular files in it."""

    root: Path  # the learner's folder
    folder: Path  # the stage folder: the root or a folder below it, reached without a link
    files: tuple[str, ...]  # regular files, relative to `folder` ("/"-separated), the stage's first
    left_out: tuple[str, ...] = field(default=())  # files not taken, with the reason


def shown(name: str) -> str:
    """A file name as text that can be printed and written anywhere: bytes that are not
    UTF-8 (Python keeps them as surrogates) are shown as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def valid_name(name: str) -> bool:
    return shown(name) == name


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a link"
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _open_dir(path: Path | str, dir_fd: int | None = None) -> int:
    return os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW, dir_fd=dir_fd)


def _open_root(root: Path) -> int:
    """The learner's folder itself, refused when it is a link or not a folder."""
    try:
        info = os.lstat(root)
    except OSError as exc:
        raise Refused(f"{shown(root.name)}/ cannot be read ({exc.strerror}).") from None
    if stat.S_ISLNK(info.st_mode):
        raise Refused(f"{shown(root.name)} is a link. {LINKS_MESSAGE}")
    if not stat.S_ISDIR(info.st_mode):
        raise Refused(f"{shown(root.name)} is not a folder ({_kind(info.st_mode)}).")
    try:
        return _open_dir(root)
    except OSError as exc:
        raise Refused(f"{shown(root.name)}/ cannot be read ({exc.strerror}).") from None


def _open_below(root: Path, relative: PurePosixPath) -> int:
    """A folder below the learner's, opened one level at a time, never through a link."""
    fd = _open_root(root)
    try:
        for part in relative.parts:
            try:
                inner = _open_dir(part, dir_fd=fd)
            except OSError:
                raise Refused(f"{shown(str(relative))} is a link or not a folder. {LINKS_MESSAGE}") from None
            os.close(fd)
            fd = inner
        return fd
    except BaseException:
        os.close(fd)
        raise


def _entries(fd: int) -> list[tuple[str, os.stat_result]]:
    """Names in an open folder with their lstat, sorted (never following a link); at most
    MAX_NAMES + 1 of them, which is enough to refuse a folder that holds more."""
    found = []
    with os.scandir(fd) as it:
        for entry in it:
            if len(found) > MAX_NAMES:
                break
            try:
                found.append((entry.name, entry.stat(follow_symlinks=False)))
            except OSError:
                continue  # gone since it was listed
    return sorted(found, key=lambda item: item[0])


def _resembles(name: str, wanted: str) -> bool:
    """`Bigram.py`, `bigram (1).py`, `bigram-2.py`, `bigram.py.txt` for `bigram.py`."""
    stem, suffix = os.path.splitext(wanted)
    pattern = rf"{re.escape(stem)}(?:\s*\(\d+\)|[-_ ]\d+|[-_ ]?copy)?{re.escape(suffix)}(?:\.txt)?"
    return name != wanted and re.fullmatch(pattern, name, re.IGNORECASE) is not None


def find_stage_folder(root: Path, stage: Stage) -> Path:
    """Where a submission keeps the stage's files, or `Refused` saying why there is none.

    Learners hand in the files themselves, the stage folder, or their whole copy of the
    course (a GitHub Classroom repository); an LMS download may add a folder around any of
    these. The stage folder is the one folder, at most SEARCH_DEPTH levels down, that
    holds every one of the stage's files as regular files. When two folders do, the grader
    does not guess which one to grade.
    """
    root = Path(root)
    wanted = set(stage.files)
    candidates: list[PurePosixPath] = []
    links: list[str] = []
    odd: list[str] = []
    similar: list[str] = []
    elsewhere: list[str] = []
    names_seen = 0
    # Folders to look through, nearest first, and whether a copy found there would be graded
    # (deeper than SEARCH_DEPTH, one is only named in the message).
    queue: list[tuple[PurePosixPath, int, bool]] = [(PurePosixPath(), _open_root(root), True)]
    try:
        while queue:
            relative, fd, searched = queue.pop(0)
            try:
                entries = _entries(fd)
                present = set()
                for name, info in entries:
                    names_seen += 1
                    if names_seen > MAX_NAMES:
                        break
                    path = relative / name
                    mode = info.st_mode
                    if stat.S_ISLNK(mode):
                        # Named like what the grader looks for first: the likeliest to be the trick.
                        named = name in wanted or name in {stage.id, "exercises"}
                        links.insert(0, shown(str(path))) if named else links.append(shown(str(path)))
                        continue
                    if not valid_name(name):
                        odd.append(f"the name of {shown(str(path))} is not valid UTF-8")
                        continue
                    if name in wanted:
                        if stat.S_ISREG(mode):
                            present.add(name)
                        elif not stat.S_ISDIR(mode):
                            odd.append(f"{shown(str(path))} is {_kind(mode)}")
                    elif stat.S_ISREG(mode) and any(_resembles(name, w) for w in wanted):
                        similar.append(shown(str(path)))
                    if stat.S_ISDIR(mode):
                        if name in NOT_SEARCHED or name.startswith("."):
                            if name not in TOOL_FOLDERS:  # solutions/, a hidden backup: say so if it is there
                                elsewhere += _names_in(fd, name, wanted, relative)
                            continue
                        depth = len(relative.parts) + 1
                        if depth <= TREE_DEPTH:
                            try:
                                queue.append((path, _open_dir(name, dir_fd=fd), searched and depth <= SEARCH_DEPTH))
                            except OSError:
                                pass  # replaced by something else since it was listed
                if present == wanted and searched:
                    candidates.append(relative)
                elif present == wanted:
                    elsewhere.append(shown(str(relative / stage.files[0])))
                elif present:
                    odd.append(f"{shown(str(relative / sorted(present)[0]))} has no {', '.join(sorted(wanted - present))} beside it")
            finally:
                os.close(fd)
    finally:
        for _, other, _ in queue:
            os.close(other)
    where = _where(root)
    if len(candidates) == 1:
        return root.joinpath(*candidates[0].parts)
    files = ", ".join(stage.files)
    if len(candidates) > 1:
        copies = " and ".join(f"{where}/{c}/" if c.parts else f"{where}/" for c in candidates[:3])
        raise Refused(
            f"Found {files} in more than one folder ({copies}), so the grader does not guess which one to grade. "
            f"Hand in one copy only."
        )
    if links:
        raise Refused(f"{where}/{links[0]} is a link. {LINKS_MESSAGE}")
    if odd:
        raise Refused(f"{where}/{odd[0]}, so it cannot be graded. Hand in {files} as an ordinary file.")
    if similar:
        names = " and ".join(similar[:2])
        raise Refused(f"Found {names}; the file must be named {files}. Rename it and hand it in again.")
    if elsewhere:
        raise Refused(
            f"Found {elsewhere[0]}, in a folder the grader does not look in (solutions/, a hidden folder, or more than "
            f"{SEARCH_DEPTH} folders down). Put {files} in {where}/ or {where}/{stage.id}/."
        )
    if names_seen > MAX_NAMES:
        raise Refused(f"{where}/ holds more than {MAX_NAMES:,} files and folders; hand in only your code.")
    raise Refused(
        f"No {files} in this submission, so none of this stage's checks could be counted. "
        f"The grader looked in {where}/, {where}/{stage.id}/ and the folders below."
    )


def _names_in(fd: int, name: str, wanted: set[str], relative: PurePosixPath) -> list[str]:
    """Stage files one level inside a folder that is not searched (solutions/02_bigram/bigram.py)."""
    found = []
    try:
        inner = _open_dir(name, dir_fd=fd)
    except OSError:
        return found
    try:
        for sub, info in _entries(inner)[:200]:
            if sub in wanted:
                found.append(shown(str(relative / name / sub)))
            elif stat.S_ISDIR(info.st_mode) and valid_name(sub):
                try:
                    deeper = _open_dir(sub, dir_fd=inner)
                except OSError:
                    continue
                try:
                    found += [shown(str(relative / name / sub / f)) for f, _ in _entries(deeper)[:200] if f in wanted]
                finally:
                    os.close(deeper)
    finally:
        os.close(inner)
    return found


def _where(root: Path) -> str:
    return shown(root.name) or shown(str(root))


def take(root: Path, stage: Stage | None = None, folder: Path | None = None, only: tuple[str, ...] = ()) -> Taken:
    """The files to grade: the stage folder found in `root` (or `folder`, which must lie inside
    `root`), every regular file in it (or only those named in `only`). `Refused` when the folder holds
    a link, a file that is not a regular file, a name that is not UTF-8, or is too deep or
    too large to be a submission."""
    root = Path(root)
    if folder is None:
        folder = find_stage_folder(root, stage)
    relative = PurePosixPath(*Path(folder).relative_to(root).parts)
    required = set(stage.files) if stage is not None else set()
    fd = _open_below(root, relative)
    files: list[str] = []
    left_out: list[str] = []
    budget = {"names": MAX_NAMES, "bytes": MAX_TOTAL_BYTES}
    try:
        _walk(fd, PurePosixPath(), 0, required, files, left_out, budget, "/".join([_where(root), *relative.parts]))
    finally:
        os.close(fd)
    missing = sorted(required - set(files))
    if missing:
        where = "/".join([_where(root), *relative.parts])
        raise Refused(f"No {', '.join(missing)} in {where}/, so none of this stage's checks could be counted.")
    if only:
        left_out += [f"{f} (not one of {', '.join(only)})" for f in files if f not in only]
        files = [f for f in files if f in only]
    first = [f for f in (stage.files if stage else ()) if f in files]
    return Taken(root, Path(folder), tuple(first + [f for f in files if f not in first]), tuple(left_out))


def _walk(fd, relative, depth, required, files, left_out, budget, where: str) -> None:
    """Every regular file below an open folder, into `files`; `Refused` for anything else."""
    for name, info in _entries(fd):
        budget["names"] -= 1
        if budget["names"] < 0:
            raise Refused(f"{where}/ holds more than {MAX_NAMES:,} files and folders; hand in only your code.")
        path = relative / name
        if not valid_name(name):
            raise Refused(f"The name of {where}/{shown(str(path))} is not valid UTF-8. Rename it (letters, digits, _ and -) and hand it in again.")
        if name in NOT_TAKEN or name.startswith("."):
            continue
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            raise Refused(f"{where}/{path} is a link. {LINKS_MESSAGE}")
        if stat.S_ISDIR(mode):
            if depth + 1 > TREE_DEPTH:
                raise Refused(f"{where}/{path}/ is more than {TREE_DEPTH} folders deep; hand in only your code.")
            try:
                inner = _open_dir(name, dir_fd=fd)
            except OSError:
                raise Refused(f"{where}/{path}/ changed while it was being read; hand it in again.") from None
            try:
                _walk(inner, path, depth + 1, required, files, left_out, budget, where)
            finally:
                os.close(inner)
        elif not stat.S_ISREG(mode):
            raise Refused(f"{where}/{path} is {_kind(mode)}, not a file. Hand in ordinary files only.")
        elif info.st_size > MAX_FILE_BYTES:
            if str(path) in required or name.endswith(".py"):
                raise Refused(f"{where}/{path} is larger than {MAX_FILE_BYTES >> 20} MiB, too large to be code.")
            left_out.append(f"{path} (larger than {MAX_FILE_BYTES >> 20} MiB)")
        else:
            budget["bytes"] -= info.st_size
            if budget["bytes"] < 0 or len(files) >= MAX_FILES:
                raise Refused(
                    f"{where}/ holds more than {MAX_FILES:,} files or {MAX_TOTAL_BYTES >> 20} MiB; hand in only your code."
                )
            files.append(str(path))


def read(taken: Taken, name: str) -> bytes:
    """One file taken, read without following a link and without blocking: `Refused` when it
    is no longer the regular file intake saw."""
    relative = PurePosixPath(name)
    folder = PurePosixPath(*taken.folder.relative_to(taken.root).parts) / relative.parent
    dir_fd = _open_below(taken.root, folder)
    try:
        try:
            fd = os.open(relative.name, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            raise Refused(f"{name} changed while it was being read (a link now, or gone); hand it in again.") from None
    finally:
        os.close(dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{name} is {_kind(info.st_mode)}, not a file. Hand in ordinary files only.")
        chunks, left = [], MAX_FILE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise Refused(f"{name} is larger than {MAX_FILE_BYTES >> 20} MiB, too large to be code.")
        return b"".join(chunks)
    finally:
        os.close(fd)


def fingerprint(taken: Taken, salt: str) -> str:
    """What a grade depends on: `salt` (the stage and the mode) and every file taken, names
    and bytes. A learner whose fingerprint is unchanged since their records were written is
    not graded again."""
    digest = hashlib.sha256(salt.encode())
    for name in taken.files:
        digest.update(f"\0{name}\0".encode("utf-8", "surrogateescape"))
        digest.update(read(taken, name))
    return digest.hexdigest()


def refusal_fingerprint(message: str, salt: str) -> str:
    """The fingerprint of a refused submission: the same refusal is not graded again."""
    return hashlib.sha256(f"{salt}\0refused\0{message}".encode("utf-8", "surrogateescape")).hexdigest()


def copy(taken: Taken, target: Path, mode: int = 0o444) -> None:
    """Copy the files taken into `target` (read-only by default), each read by `read`."""
    target.mkdir(parents=True, exist_ok=True)
    for name in taken.files:
        destination = target.joinpath(*PurePosixPath(name).parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(read(taken, name))
        os.chmod(destination, mode)
