"""A node's own directory copies (``exchange.runtime.dirstore``) and start-up from them (``load_directory``).

Files in a temporary state folder, no servers: each directory accepted is kept,
a restart starts from the newest one that verifies (pinned or stored), and a
copy that does not verify never wins. The stream side (``publish_newest``) is
attacked through the real servers in tests/integration/test_directory_restart.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from exchange.core.directory import SignedDirectory
from exchange.runtime.dirstore import KEPT_VERSIONS, DirectoryFolder
from exchange.runtime.lifecycle import load_directory
from tests.unit.test_directory import Auth, auths, make, signed_by

__all__ = ["auths"]  # the fixture, re-used


def _pinned(tmp_path: Path, signed: SignedDirectory) -> Path:
    path = tmp_path / "pinned.pb"
    path.write_bytes(signed.to_bytes())
    return path


def test_saved_copies_come_back_oldest_first(tmp_path: Path, auths: dict[str, Auth]) -> None:
    folder = DirectoryFolder(tmp_path / "state" / "directories")
    assert folder.stored() == []  # no folder yet: nothing stored, no error
    v3, v2 = (signed_by(make(auths, version=v), auths, "ru", "tj") for v in (3, 2))
    folder.save(v3)
    folder.save(v2)
    assert folder.stored() == [v2.to_bytes(), v3.to_bytes()]
    assert not list(folder.folder.glob(".*.tmp"))  # the temporary file was renamed into place


def test_only_the_newest_versions_are_kept(tmp_path: Path, auths: dict[str, Auth]) -> None:
    folder = DirectoryFolder(tmp_path)
    for version in range(1, KEPT_VERSIONS + 4):
        folder.save(signed_by(make(auths, version=version), auths, "ru", "tj"))
    versions = [SignedDirectory.from_bytes(d).version for d in folder.stored()]
    assert versions == list(range(4, KEPT_VERSIONS + 4))


def test_start_from_the_newest_stored_copy(tmp_path: Path, auths: dict[str, Auth]) -> None:
    """The update that revoked a key (v3) survives a restart that pins v1."""
    v1, v2, v3 = (signed_by(make(auths, version=v), auths, "ru", "tj") for v in (1, 2, 3))
    state = load_directory(_pinned(tmp_path, v1), [v3.to_bytes(), v2.to_bytes()])
    assert state.directory.version == 3


def test_pinned_newer_than_the_copies_wins(tmp_path: Path, auths: dict[str, Auth]) -> None:
    v2, v5 = (signed_by(make(auths, version=v), auths, "ru", "tj") for v in (2, 5))
    assert load_directory(_pinned(tmp_path, v5), [v2.to_bytes()]).directory.version == 5


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda a: signed_by(make(a, version=9), a, "ru").to_bytes(), id="under-signed"),
        pytest.param(lambda a: b"\x00not a directory", id="garbage"),
        pytest.param(
            lambda a: signed_by(
                dataclasses.replace(make(a, version=9), deployment="x"), a, "ru", "tj"
            ).to_bytes(),
            id="other-deployment",
        ),
    ],
)
def test_a_copy_that_does_not_verify_never_wins(tmp_path: Path, auths: dict[str, Auth], bad) -> None:  # type: ignore[no-untyped-def]
    v1, v2 = (signed_by(make(auths, version=v), auths, "ru", "tj") for v in (1, 2))
    state = load_directory(_pinned(tmp_path, v1), [v2.to_bytes(), bad(auths)])
    assert state.directory.version == 2
