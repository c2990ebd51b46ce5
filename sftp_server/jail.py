"""The user's virtual root: which client paths exist, and where they live in the landing tree.

A user sees ``/`` holding one folder per campaign slug it may write to, and nothing else;
``/<slug>/<sub>/<name>`` is ``<landing>/<slug>/<sub>/<name>``. Client paths are normalised
inside the root (``..`` stops at ``/``, absolute paths start at the virtual root), so no path
can name anything outside it. A first component that is not one of the user's slugs does not
exist for this user. Symbolic links are never followed: a path through one is refused.

A session names the same folders over and over (one OPEN per file, thousands of files into one
day folder): the folders a path passes through are checked (each one a real folder, not a
link) once per session and remembered; the last part of a path is checked every time. No SFTP
client can make a link or rename a folder, and a folder the session removes is forgotten.

Every refusal made because of the jail is raised here, as the SFTP status the client sees;
ordinary filesystem errors (``OSError``) are translated by asyncssh by errno.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

import asyncssh


@dataclass(frozen=True)
class VirtualPath:
    """A normalised client path: ``()`` is the root, ``("acme", "2026-01-15", "a.wav")``."""

    parts: tuple[str, ...]

    @property
    def is_root(self) -> bool:
        return not self.parts

    @property
    def is_campaign_folder(self) -> bool:
        return len(self.parts) == 1

    @property
    def rel_path(self) -> str:
        """The landing-relative POSIX path, as file rows spell it."""
        return "/".join(self.parts)

    def client_path(self) -> bytes:
        return ("/" + self.rel_path).encode("utf-8")


def normalise(path: bytes) -> VirtualPath:
    """Resolve a client path inside the virtual root (``..`` never climbs above ``/``)."""
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise asyncssh.SFTPInvalidFilename("file names must be UTF-8") from None
    if "\x00" in text:
        raise asyncssh.SFTPInvalidFilename("file names may not contain NUL")
    normal = posixpath.normpath(posixpath.join("/", text))
    return VirtualPath(tuple(p for p in normal.split("/") if p not in ("", ".", "..")))


class Jail:
    """Maps one user's virtual paths to real paths below the landing root."""

    def __init__(self, landing: Path, slugs: frozenset[str]) -> None:
        self.landing = landing
        self.slugs = slugs
        self._prefix = f"{landing}/"
        self._checked_folders: set[tuple[str, ...]] = set()  # virtual parts of real folders

    def resolve(self, path: bytes) -> VirtualPath:
        """The normalised path; refused when it names something outside the user's folders."""
        return self._inside_slugs(normalise(path))

    def resolve_inside(self, path: bytes) -> VirtualPath:
        """Like :meth:`resolve`, for entries that must lie below a campaign folder."""
        where = normalise(path)
        if where.is_root or where.is_campaign_folder:
            if where.is_campaign_folder and where.parts[0] in self.slugs:
                raise asyncssh.SFTPPermissionDenied("campaign folders cannot be changed")
            raise asyncssh.SFTPPermissionDenied("files and folders go inside a campaign folder")
        return self._inside_slugs(where)

    def _inside_slugs(self, where: VirtualPath) -> VirtualPath:
        if not where.is_root and where.parts[0] not in self.slugs:
            raise asyncssh.SFTPNoSuchFile("no such file or folder")
        return where

    def local(self, where: VirtualPath) -> Path:
        """The real path; the campaign folder is created on demand, symlinks are refused."""
        if where.is_root:
            self.landing.mkdir(parents=True, exist_ok=True)
            return self.landing
        folders = where.parts[:-1] or where.parts  # a campaign folder: that folder itself
        if folders not in self._checked_folders:
            self._check_folders(where.parts[0], folders)
        path = Path(self._prefix + where.rel_path)
        _refuse_symlink(path)
        return path

    def forget_folders(self) -> None:
        """Check every folder again from now on (the session removed one)."""
        self._checked_folders.clear()

    def _check_folders(self, slug: str, folders: tuple[str, ...]) -> None:
        """Create the campaign folder if missing; refuse a link among ``folders``; remember
        them once all exist as real folders."""
        (self.landing / slug).mkdir(parents=True, exist_ok=True)
        current = self.landing
        for part in folders:
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return  # not there (yet): the operation itself says so
            if stat.S_ISLNK(mode):
                raise asyncssh.SFTPPermissionDenied("symbolic links are not followed")
            if not stat.S_ISDIR(mode):
                return
        self._checked_folders.add(folders)

    def to_virtual(self, local: Path) -> VirtualPath:
        """Reverse of :meth:`local`, for paths reported back to the client."""
        try:
            rel = local.relative_to(self.landing)
        except ValueError:
            raise asyncssh.SFTPNoSuchFile("no such file or folder") from None
        return self.resolve(("/" + rel.as_posix()).encode("utf-8"))


def _refuse_symlink(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # a part that does not exist yet is no link
    if stat.S_ISLNK(mode):
        raise asyncssh.SFTPPermissionDenied("symbolic links are not followed")
