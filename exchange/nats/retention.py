"""Move LIAISON_OUT / LIAISON_IN from limits retention (older versions) to work-queue retention.

What it does: JetStream cannot change a stream's retention to or from work-queue
with an update, so a stream created by an older Liaison (limits retention: every
frame kept forever) is replaced, but only when that loses nothing. The stream is
first frozen (its subjects are swapped for one nobody publishes on, so a publish
gets "no responders" and stays in the publisher's out-queue, to be retried),
then every subject that still holds frames must be covered by a consumer that
has neither pending nor unacknowledged frames (:func:`unconsumed`, pure). If so,
the stream (and its consumers, which the nodes recreate) is deleted and created
again with the new configuration; if not, its subjects are restored and
:class:`ConfigError` names the stream, what is left and the remedy.

What it does not do: it never reads, copies or logs frames, and it does not
touch any other stream (LIAISON_DIRECTORY and LIAISON_ATTACH keep limits
retention). See docs/adr/0006-stream-retention.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

import nats.errors
from nats.js import api
from nats.js.client import JetStreamContext

from exchange.core.errors import ConfigError, TransportError
from exchange.core.wire import frozen_subject

__all__ = ["ConsumerView", "migrate_to_work_queue", "subject_matches", "unconsumed"]

_MAX_NAMED_SUBJECTS: Final = 5


@dataclass(frozen=True)
class ConsumerView:
    """What the check needs of a consumer: its filters (empty: all) and what it has not acked."""

    name: str
    filters: tuple[str, ...]
    num_pending: int
    num_ack_pending: int

    @property
    def caught_up(self) -> bool:
        return self.num_pending == 0 and self.num_ack_pending == 0


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a trailing ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(want) == len(have)


def unconsumed(subjects: Mapping[str, int], consumers: Iterable[ConsumerView]) -> dict[str, int]:
    """Subjects (with their counts) whose frames are not all acknowledged by a matching consumer.

    A subject is consumed when some consumer whose filter covers it has nothing pending
    and nothing awaiting an ack. A subject no consumer covers was never read.
    """
    views = list(consumers)
    left: dict[str, int] = {}
    for subject, count in subjects.items():
        if count <= 0:
            continue
        covering = [c for c in views if not c.filters or any(subject_matches(f, subject) for f in c.filters)]
        if not any(c.caught_up for c in covering):
            left[subject] = count
    return left


def _view(info: api.ConsumerInfo) -> ConsumerView:
    config = info.config
    filters = tuple(config.filter_subjects or ()) or (
        (config.filter_subject,) if config.filter_subject else ()
    )
    return ConsumerView(
        name=info.name,
        filters=filters,
        num_pending=info.num_pending or 0,
        num_ack_pending=info.num_ack_pending or 0,
    )


def _describe(left: Mapping[str, int]) -> str:
    named = sorted(left)[:_MAX_NAMED_SUBJECTS]
    more = f" and {len(left) - len(named)} more" if len(left) > len(named) else ""
    return ", ".join(f"{s} ({left[s]})" for s in named) + more


async def migrate_to_work_queue(js: JetStreamContext, old: api.StreamConfig, new: api.StreamConfig) -> None:
    """Replace the limits-retention stream ``old`` by ``new`` if every frame in it was acknowledged.

    Raises :class:`ConfigError` (stream restored as it was) when frames are left, and
    :class:`TransportError` when NATS fails on the way.
    """
    name = new.name or ""
    frozen = replace(old, subjects=[frozen_subject(name)])
    # Restored with the new subjects: right even if a crash left ``old`` frozen last time.
    restored = replace(old, subjects=new.subjects)
    retention = api.RetentionPolicy(old.retention or api.RetentionPolicy.LIMITS).value
    try:
        await js.update_stream(frozen)  # from here on nothing new lands in the stream
        info = await js.stream_info(name, subjects_filter=">")
        consumers: Sequence[api.ConsumerInfo] = await js.consumers_info(name)
        left = unconsumed(dict(info.state.subjects or {}), [_view(c) for c in consumers])
        if left:
            await js.update_stream(restored)
            total = sum(left.values())
            raise ConfigError(
                f"stream {name} was created by an older Liaison with {retention} retention and holds "
                f"{total} frame(s) no consumer has acknowledged: {_describe(left)}; run the previous "
                f"version until its consumers on {name} show nothing pending (or remove the stream with "
                f"`nats stream rm {name}` if those frames may be lost), then start this version again"
            )
        await js.delete_stream(name)
        # Sequences go on where the old stream ended: the gateway tells a redelivery from a
        # replay by a frame's out-stream sequence, so numbers must not be handed out twice.
        await js.add_stream(replace(new, first_seq=info.state.last_seq + 1))
    except (TimeoutError, nats.errors.Error) as e:
        raise TransportError(f"cannot move stream {name} to work-queue retention: {e}") from e
