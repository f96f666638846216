"""Helpers for end-to-end tests against a lab of real processes.

A lab runs a real nats-server and one real process per node; these helpers
seal envelopes with an office's own keys and put frames straight onto NATS,
as a faulty or hostile node would, to drive the gateway's refusal paths.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from exchange.core.codec.envelope import encode_frame
from exchange.core.directory import SignedDirectory
from exchange.core.envelope import Envelope
from exchange.core.identity import OfficeIdentity
from exchange.core.model import CaseMessage, Directory, Suite
from exchange.core.seal import seal
from exchange.core.wire import out_subject
from exchange.nats.transport import connect
from keys.keystore import open_keystore, passphrase_from
from liaison.lab.lab import Lab

INVENTORY = Path(__file__).parent / "data" / "inventory.toml"
WAIT_S = 30.0


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def directory(lab: Lab) -> Directory:
    assert lab.deployment is not None
    return SignedDirectory.from_bytes(lab.deployment.directory_file.read_bytes()).directory


def identity(lab: Lab, owner: str) -> OfficeIdentity:
    assert lab.deployment is not None
    return open_keystore(lab.deployment.keys_dir(owner), passphrase_from(lab.deployment.passphrase_file))


def sealed(
    lab: Lab,
    sender: str,
    recipients: list[str],
    *,
    text: str = "case text",
    now_ms: int | None = None,
    ttl_s: int = 3600,
    in_directory: Directory | None = None,
) -> Envelope:
    """An envelope sealed with ``sender``'s real keys (optionally against another directory view)."""
    return seal(
        CaseMessage(case_id="INJECTED", text=text),
        sender=sender,
        sender_keys=identity(lab, sender).signing_keys(Suite.CLASSIC),
        recipients=recipients,
        directory=in_directory or directory(lab),
        suite=Suite.CLASSIC,
        now_ms=now_ms if now_ms is not None else int(time.time() * 1000),
        ttl_s=ttl_s,
        case_id="INJECTED",
    )


def with_limits(d: Directory, **limits: int) -> Directory:
    return replace(d, limits=replace(d.limits, **limits))


def inject(lab: Lab, subject_office: str, payload: bytes | Envelope, msg_id: str) -> None:
    """Publish a frame on ``subject_office``'s out subject, as that office's node would."""
    data = encode_frame(payload) if isinstance(payload, Envelope) else payload
    url = lab.nats_servers(subject_office)  # in a cluster lab: that office's own leaf server

    async def go() -> None:
        # With that office's own NATS identity: what a faulty or compromised node could do.
        transport = await connect(url, "test-injector", **lab.nats_connect_args(subject_office))
        try:
            await transport.publish(out_subject(subject_office), data, msg_id, 1)
        finally:
            await transport.close()

    asyncio.run(go())
