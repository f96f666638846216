"""A node's own copies of the directories it accepted, and the one rule for publishing one.

What it does: ``DirectoryFolder`` keeps each signed directory a node accepted
as one file per version in the node's state folder, written atomically
(temporary file, fsync, rename, fsync of the folder), so a restart starts from
the newest one that still verifies (``exchange.runtime.lifecycle.load_directory``)
instead of the pinned file alone. ``publish_newest`` makes the directory
stream hold the newest directory this node knows without ever replacing a
newer one: a newer one in the stream that verifies is adopted (and saved), one
that does not is left alone and reported, and the node's own is published
only over the very stream sequence it looked at.

What it does not: verify signatures itself (``DirectoryState.apply`` does),
or decide which directory the node trusts at start (``load_directory``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

from exchange.core.directory import DirectoryState, SignedDirectory
from exchange.core.errors import DirectoryError, LiaisonError, StoreError, TransportError, map_exceptions
from exchange.nats.transport import Transport

__all__ = ["KEPT_VERSIONS", "DirectoryFolder", "publish_newest"]

log = structlog.get_logger()

KEPT_VERSIONS: Final = 16
"""How many of the newest accepted versions a node keeps (older files are removed)."""
PUBLISH_ATTEMPTS: Final = 3
"""Rounds of look-then-publish before giving up to a stream that keeps changing."""
_NAME = re.compile(r"directory-v(\d{1,12})\.pb")
# JetStream's answer when the subject's last sequence is not the one the publish expected.
_WRONG_LAST_SEQUENCE: Final = 10071


class DirectoryFolder:
    """``directory-vNNN.pb`` files in a node's state folder; ``save`` is atomic."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, signed: SignedDirectory) -> None:
        """Write ``signed`` durably (a crash leaves the old set or the new file, never half a file)."""
        data = signed.to_bytes()
        target = self.folder / f"directory-v{signed.version:06d}.pb"
        tmp = target.with_name(f".{target.name}.tmp")
        with map_exceptions(
            {OSError: StoreError}, f"cannot save directory v{signed.version} in {self.folder}"
        ):
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        for old in self._versions()[:-KEPT_VERSIONS]:
            with contextlib.suppress(OSError):
                old[1].unlink()

    def _versions(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            m = _NAME.fullmatch(path.name)
            if m:
                found.append((int(m.group(1)), path))
        return sorted(found)

    def stored(self) -> list[bytes]:
        """Every kept directory, oldest version first (unverified; unreadable files are skipped)."""
        out = []
        for _, path in self._versions():
            try:
                out.append(path.read_bytes())
            except OSError as e:
                log.warning("directory_copy_unreadable", file=path.name, error_type=type(e).__name__)
        return out


async def publish_newest(
    transport: Transport, state: DirectoryState, save: Callable[[SignedDirectory], None]
) -> None:
    """Leave the newest directory in the stream; never publish over a newer one.

    The plan, each step stopping a rollback:
    (1) read what the stream holds (sequence and bytes);
    (2) newer than ours and it verifies: adopt it and save it (a node that lost
        its copies catches up instead of pushing its older one back);
    (3) newer than ours and it does not verify: leave it, log an error (an
        operator must look: the stream holds something this node cannot trust);
    (4) the same version: nothing to do;
    (5) older, none or unreadable: publish ours, only over the sequence read in (1),
        so an update published meanwhile is never overwritten; look again if it was.
    """
    for _ in range(PUBLISH_ATTEMPTS):
        mine = state.current
        if mine is None:
            raise DirectoryError("no directory has been applied yet")
        last = await transport.last_directory()  # (1)
        seq = 0
        if last is not None:
            seq, data = last
            try:
                theirs = SignedDirectory.from_bytes(data).version
            except LiaisonError:
                theirs = 0  # not a directory at all: replaced by ours
            if theirs > mine.version:
                try:  # (2)
                    adopted = state.apply(data)
                except LiaisonError as e:  # (3)
                    ahead = {"version": theirs, "mine": mine.version, "error": str(e)}
                    log.error("directory_stream_ahead_unverified", **ahead)  # noqa: TRY400 - no traceback
                    return
                save(adopted)
                log.info("directory_adopted_from_stream", version=adopted.version)
                return
            if theirs == mine.version:  # (4)
                return
        try:  # (5)
            await transport.put_directory(mine.to_bytes(), after_seq=seq)
        except TransportError as e:
            if getattr(e.__cause__, "err_code", None) == _WRONG_LAST_SEQUENCE:
                continue  # someone published meanwhile: look again
            raise
        log.info("directory_published", version=mine.version)
        return
    raise TransportError(f"the directory stream kept changing over {PUBLISH_ATTEMPTS} attempts")
