"""The virtual root: how client paths are normalised and which ones a user may name."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from sftp_server.jail import Jail, normalise


@pytest.mark.parametrize("client_path, parts", [
    (b"/", ()),
    (b"", ()),
    (b".", ()),
    (b"..", ()),
    (b"/../../..", ()),
    (b"acme", ("acme",)),
    (b"/acme/./2026-01-15//a.wav", ("acme", "2026-01-15", "a.wav")),
    (b"/acme/../../etc/passwd", ("etc", "passwd")),
    (b"../acme/x/../y.wav", ("acme", "y.wav")),
    ("/acme/réclamation.wav".encode(), ("acme", "réclamation.wav")),
])
def test_normalise_stays_inside_the_root(client_path, parts):
    assert normalise(client_path).parts == parts


@pytest.mark.parametrize("client_path", [b"/acme/\xff.wav", b"/acme/a\x00b"])
def test_unusable_names_are_refused(client_path):
    with pytest.raises(asyncssh.SFTPInvalidFilename):
        normalise(client_path)


def test_only_the_users_campaign_folders_resolve(tmp_path: Path):
    jail = Jail(tmp_path / "landing", frozenset({"acme"}))
    assert jail.resolve(b"/acme/a.wav").rel_path == "acme/a.wav"
    assert jail.resolve(b"/").is_root
    for path in (b"/other/a.wav", b"/etc/passwd", b"/acme/../other"):
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            jail.resolve(path)


@pytest.mark.parametrize("client_path", [b"/", b"/acme", b"/new", b"/a.wav"])
def test_nothing_is_created_or_removed_at_the_top(tmp_path: Path, client_path):
    jail = Jail(tmp_path / "landing", frozenset({"acme"}))
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        jail.resolve_inside(client_path)


def test_campaign_folder_is_created_on_demand_and_symlinks_refused(tmp_path: Path):
    landing = tmp_path / "landing"
    jail = Jail(landing, frozenset({"acme"}))
    assert jail.local(jail.resolve(b"/acme/a.wav")) == landing / "acme" / "a.wav"
    assert (landing / "acme").is_dir()
    (landing / "acme" / "out").symlink_to(tmp_path)
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        jail.local(jail.resolve(b"/acme/out/x.wav"))
    assert jail.to_virtual(landing / "acme" / "a.wav").client_path() == b"/acme/a.wav"


def test_folders_are_checked_once_per_session_the_last_part_every_time(tmp_path: Path):
    landing = tmp_path / "landing"
    jail = Jail(landing, frozenset({"acme"}))
    (landing / "acme" / "day").mkdir(parents=True)
    assert jail.local(jail.resolve(b"/acme/day/a.wav")) == landing / "acme" / "day" / "a.wav"
    (landing / "acme" / "day" / "b.wav").symlink_to(tmp_path / "elsewhere.wav")
    with pytest.raises(asyncssh.SFTPPermissionDenied):  # in a remembered folder
        jail.local(jail.resolve(b"/acme/day/b.wav"))
    # A folder the session removed is checked again: here a link took its place.
    (landing / "acme" / "day" / "b.wav").unlink()
    (landing / "acme" / "day").rmdir()
    (landing / "acme" / "day").symlink_to(tmp_path, target_is_directory=True)
    jail.forget_folders()
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        jail.local(jail.resolve(b"/acme/day/a.wav"))


def test_each_campaign_folder_is_created_on_demand(tmp_path: Path):
    landing = tmp_path / "landing"
    jail = Jail(landing, frozenset({"acme", "beta"}))
    for slug in ("acme", "beta"):  # as a listing of the root names them
        assert jail.local(jail.resolve(f"/{slug}".encode())).is_dir()
