"""Domain types: frozen dataclasses and enums that check their invariants.

The enums carry the same numbers as the wire contract's enums so the codec
maps them one to one. Nothing here does I/O or cryptography; the directory's
lookups ("which key of office X was valid at time T", "may X send kind K to
Y") are plain functions of the data and an injected time.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from exchange.core.bounds import (
    MAX_ATTACHMENT_NAME_LEN,
    MAX_ATTACHMENTS,
    MAX_CASE_ID_LEN,
    MAX_MEDIA_TYPE_LEN,
    MAX_PERSON_FIELD_LEN,
    MAX_PERSONS,
    MAX_RECIPIENTS,
    MAX_SUBJECT_LEN,
    MAX_THREAD_LEN,
    check_count,
    check_text,
)

__all__ = [
    "Alert",
    "AlertCategory",
    "Algorithm",
    "Attachment",
    "AttachmentManifest",
    "Authority",
    "Body",
    "CaseMessage",
    "ConsularRequest",
    "ConsularRequestType",
    "Directory",
    "Gateway",
    "Handling",
    "Identifier",
    "KeyStatus",
    "Kind",
    "Limits",
    "Office",
    "Person",
    "PolicyRule",
    "Priority",
    "PublicKey",
    "Reason",
    "ReceiptState",
    "Suite",
]

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def check_id(value: str, what: str) -> str:
    """An office/gateway/authority id: lower-case letters, digits and dashes, 1..63 characters.

    ``fullmatch``: ``re.match`` with ``$`` accepted a trailing newline.
    """
    if not isinstance(value, str) or not _ID.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 80 else "(too long)"
        raise ValueError(f"{what} id {shown!r} is not [a-z0-9-], 1..63 characters")
    return value


class Suite(enum.IntEnum):
    CLASSIC = 1
    HYBRID_PQ = 2

    @property
    def label(self) -> str:
        return {Suite.CLASSIC: "classic", Suite.HYBRID_PQ: "hybrid-pq"}[self]

    @classmethod
    def parse(cls, text: str) -> Suite:
        for suite in cls:
            if suite.label == text:
                return suite
        raise ValueError(f"unknown suite {text!r} (classic, hybrid-pq)")

    @property
    def signing_algorithms(self) -> tuple[Algorithm, ...]:
        if self is Suite.CLASSIC:
            return (Algorithm.ED25519,)
        return (Algorithm.ED25519, Algorithm.ML_DSA_65)

    @property
    def kem_algorithm(self) -> Algorithm:
        return Algorithm.X25519 if self is Suite.CLASSIC else Algorithm.ML_KEM_768_X25519


class Algorithm(enum.IntEnum):
    ED25519 = 1
    ML_DSA_65 = 2
    X25519 = 3
    ML_KEM_768_X25519 = 4

    @property
    def is_signing(self) -> bool:
        return self in (Algorithm.ED25519, Algorithm.ML_DSA_65)


class Kind(enum.IntEnum):
    ALERT = 1
    CASE_MESSAGE = 2
    CONSULAR_REQUEST = 3

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str) -> Kind:
        try:
            return cls[text.upper().replace("-", "_")]
        except KeyError:
            raise ValueError(f"unknown kind {text!r} (alert, case-message, consular-request)") from None


class Priority(enum.IntEnum):
    ROUTINE = 1
    PRIORITY = 2
    IMMEDIATE = 3
    FLASH = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Priority:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown priority {text!r} (routine, priority, immediate, flash)") from None


class Handling(enum.IntEnum):
    OFFICIAL = 1
    RESTRICTED = 2
    CONFIDENTIAL = 3


class KeyStatus(enum.IntEnum):
    ACTIVE = 1
    RETIRING = 2
    REVOKED = 3


class ReceiptState(enum.IntEnum):
    ACCEPTED = 1
    STAMPED = 2
    DELIVERED = 3
    READ = 4


class Reason(enum.IntEnum):
    """Rejection reason codes (same numbers as liaison.v1.RejectionReason)."""

    MALFORMED = 1
    OVERSIZE = 2
    UNKNOWN_SENDER = 3
    UNKNOWN_RECIPIENT = 4
    BAD_SIGNATURE = 5
    KEY_REVOKED = 6
    KEY_NOT_VALID = 7
    SUITE_NOT_ALLOWED = 8
    POLICY_DENIED = 9
    EXPIRED = 10
    CLOCK_SKEW = 11
    REPLAY = 12
    DIGEST_MISMATCH = 13
    SENDER_MISMATCH = 14

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class AlertCategory(enum.IntEnum):
    DRUG_TRAFFICKING = 1
    WANTED_PERSON = 2
    MISSING_PERSON = 3
    DOCUMENT_FRAUD = 4
    HUMAN_TRAFFICKING = 5
    TERRORISM = 6
    OTHER = 7

    @classmethod
    def parse(cls, text: str) -> AlertCategory:
        try:
            return cls[text.upper().replace("-", "_")]
        except KeyError:
            names = ", ".join(c.name.lower().replace("_", "-") for c in cls)
            raise ValueError(f"unknown alert category {text!r} ({names})") from None


class ConsularRequestType(enum.IntEnum):
    LEGAL_CONSULTATION = 1
    RIGHTS_PROTECTION = 2
    DOCUMENT = 3
    DETENTION_NOTICE = 4

    @classmethod
    def parse(cls, text: str) -> ConsularRequestType:
        try:
            return cls[text.upper().replace("-", "_")]
        except KeyError:
            names = ", ".join(c.name.lower().replace("_", "-") for c in cls)
            raise ValueError(f"unknown consular request type {text!r} ({names})") from None


# --- bodies ----------------------------------------------------------------------


@dataclass(frozen=True)
class Identifier:
    scheme: str
    value: str
    issuer: str = ""

    def __post_init__(self) -> None:
        for name in ("scheme", "value", "issuer"):
            check_text(f"identifier {name}", getattr(self, name), MAX_PERSON_FIELD_LEN)


@dataclass(frozen=True)
class Person:
    full_name: str
    date_of_birth: str = ""
    nationality: str = ""
    identifiers: tuple[Identifier, ...] = ()
    role: str = ""

    def __post_init__(self) -> None:
        for name in ("full_name", "date_of_birth", "nationality", "role"):
            check_text(f"person {name}", getattr(self, name), MAX_PERSON_FIELD_LEN)
        check_count("person identifiers", len(self.identifiers), MAX_PERSONS)


_ATTACHMENT_ID = re.compile(r"[0-9a-f]{32}")


def check_attachment_id(value: str) -> str:
    """An attachment id: 32 lower-case hex characters (128 random bits, unguessable)."""
    if not isinstance(value, str) or not _ATTACHMENT_ID.fullmatch(value):
        raise ValueError("attachment id is not 32 lower-case hex characters")
    return value


@dataclass(frozen=True)
class AttachmentManifest:
    """Where an external attachment's sealed chunks are and how to open and check them."""

    id: str
    owner: str
    size: int
    chunk_size: int
    chunk_count: int
    sha256: bytes
    root: bytes
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_attachment_id(self.id)
        check_id(self.owner, "attachment owner")
        if self.chunk_size <= 0 or self.chunk_count <= 0 or self.size < 0:
            raise ValueError("attachment size, chunk size and chunk count must be positive")
        if self.chunk_count != max(1, -(-self.size // self.chunk_size)):
            raise ValueError("attachment chunk count does not match its size")
        if len(self.sha256) != 32 or len(self.root) != 32 or len(self.key) != 32:
            raise ValueError("attachment digests and key must be 32 bytes")


@dataclass(frozen=True)
class Attachment:
    name: str
    media_type: str
    content: bytes
    sha256: bytes = b""
    external: AttachmentManifest | None = None

    def __post_init__(self) -> None:
        check_text("attachment name", self.name, MAX_ATTACHMENT_NAME_LEN)
        check_text("attachment media_type", self.media_type, MAX_MEDIA_TYPE_LEN)
        if self.external is not None and self.content:
            raise ValueError("an attachment is either inline or external, not both")


def _check_body(subject: str, attachments: tuple[Attachment, ...]) -> None:
    check_text("subject", subject, MAX_SUBJECT_LEN)
    check_count("attachments", len(attachments), MAX_ATTACHMENTS)


@dataclass(frozen=True)
class Alert:
    category: AlertCategory
    priority: Priority
    subject: str
    text: str
    persons: tuple[Person, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    kind = Kind.ALERT

    def __post_init__(self) -> None:
        _check_body(self.subject, self.attachments)
        check_count("persons", len(self.persons), MAX_PERSONS)


@dataclass(frozen=True)
class CaseMessage:
    case_id: str
    text: str
    thread: str = ""
    subject: str = ""
    attachments: tuple[Attachment, ...] = ()

    kind = Kind.CASE_MESSAGE

    def __post_init__(self) -> None:
        if not self.case_id:
            raise ValueError("a case message needs a case id")
        check_text("case_id", self.case_id, MAX_CASE_ID_LEN, one_line=True)
        check_text("thread", self.thread, MAX_THREAD_LEN)
        _check_body(self.subject, self.attachments)


@dataclass(frozen=True)
class ConsularRequest:
    citizen: Person
    request_type: ConsularRequestType
    text: str
    subject: str = ""
    attachments: tuple[Attachment, ...] = ()

    kind = Kind.CONSULAR_REQUEST

    def __post_init__(self) -> None:
        _check_body(self.subject, self.attachments)


Body = Alert | CaseMessage | ConsularRequest


# --- directory -------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    algorithm: Algorithm
    public: bytes
    not_before_ms: int = 0
    not_after_ms: int = 0  # 0 = no end
    status: KeyStatus = KeyStatus.ACTIVE
    revoked_at_ms: int = 0

    def __post_init__(self) -> None:
        if self.status is KeyStatus.REVOKED and self.revoked_at_ms <= 0:
            raise ValueError(f"key {self.key_id} is revoked but has no revocation time")

    def revoked_at(self, at_ms: int) -> bool:
        return self.status is KeyStatus.REVOKED and at_ms >= self.revoked_at_ms

    def in_window(self, at_ms: int) -> bool:
        return self.not_before_ms <= at_ms and (self.not_after_ms == 0 or at_ms < self.not_after_ms)

    def valid_at(self, at_ms: int) -> bool:
        """Inside the validity window and not revoked at that time."""
        return self.in_window(at_ms) and not self.revoked_at(at_ms)


@dataclass(frozen=True)
class _Keyholder:
    id: str
    keys: tuple[PublicKey, ...]

    def key(self, key_id: str) -> PublicKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def current_key(self, algorithm: Algorithm, at_ms: int) -> PublicKey | None:
        """The key to use for new messages: the newest ACTIVE key valid at ``at_ms``."""
        usable = [
            k
            for k in self.keys
            if k.algorithm is algorithm and k.status is KeyStatus.ACTIVE and k.valid_at(at_ms)
        ]
        return max(usable, key=lambda k: k.not_before_ms, default=None)


@dataclass(frozen=True)
class Office(_Keyholder):
    country: str = ""
    agency: str = ""
    city: str = ""
    display_name: str = ""

    def __post_init__(self) -> None:
        check_id(self.id, "office")


@dataclass(frozen=True)
class Gateway(_Keyholder):
    country: str = ""
    display_name: str = ""

    def __post_init__(self) -> None:
        check_id(self.id, "gateway")


@dataclass(frozen=True)
class Authority(_Keyholder):
    country: str = ""
    display_name: str = ""

    def __post_init__(self) -> None:
        check_id(self.id, "authority")


@dataclass(frozen=True)
class PolicyRule:
    """``sender`` may send ``kinds`` to ``recipients``; ``"*"`` matches any office."""

    sender: str
    kinds: frozenset[Kind]
    recipients: frozenset[str]

    def allows(self, sender: str, kind: Kind, recipient: str) -> bool:
        return (
            self.sender in ("*", sender)
            and kind in self.kinds
            and ("*" in self.recipients or recipient in self.recipients)
            and recipient != sender
        )


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 8 * 1024 * 1024
    max_envelope_bytes: int = 12 * 1024 * 1024
    max_clock_skew_s: int = 120
    max_ttl_s: int = 30 * 24 * 3600
    minimum_suite: Suite = Suite.CLASSIC
    max_recipients: int = 32
    sender_rate_per_s: int = 0  # gateway admission per sending office; 0 = unlimited
    sender_burst: int = 0

    def __post_init__(self) -> None:
        if self.max_body_bytes <= 0 or self.max_envelope_bytes < self.max_body_bytes:
            raise ValueError("limits: need 0 < max_body_bytes <= max_envelope_bytes")
        if self.max_ttl_s <= 0 or not 0 < self.max_recipients <= MAX_RECIPIENTS:
            raise ValueError(f"limits: max_ttl_s must be positive, max_recipients 1..{MAX_RECIPIENTS}")
        if self.sender_rate_per_s < 0 or self.sender_burst < 0:
            raise ValueError("limits: sender rate and burst must not be negative")


@dataclass(frozen=True)
class Directory:
    deployment: str
    version: int
    issued_ms: int
    offices: tuple[Office, ...]
    gateways: tuple[Gateway, ...]
    authorities: tuple[Authority, ...]
    threshold: int
    policy: tuple[PolicyRule, ...] = ()
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        ids = [o.id for o in self.offices] + [g.id for g in self.gateways]
        if len(ids) != len(set(ids)):
            raise ValueError("directory: office and gateway ids must be unique")
        if len({a.id for a in self.authorities}) != len(self.authorities):
            raise ValueError("directory: authority ids must be unique")
        if not 1 <= self.threshold <= max(len(self.authorities), 1):
            raise ValueError(f"directory: threshold {self.threshold} outside 1..{len(self.authorities)}")
        if self.version < 1:
            raise ValueError("directory: version starts at 1")

    def office(self, office_id: str) -> Office | None:
        return next((o for o in self.offices if o.id == office_id), None)

    def gateway(self, gateway_id: str) -> Gateway | None:
        return next((g for g in self.gateways if g.id == gateway_id), None)

    def authority(self, authority_id: str) -> Authority | None:
        return next((a for a in self.authorities if a.id == authority_id), None)

    def allows(self, sender: str, kind: Kind, recipient: str) -> bool:
        """True when some policy rule lets ``sender`` send ``kind`` to ``recipient``."""
        return any(rule.allows(sender, kind, recipient) for rule in self.policy)

    def kinds_allowed(self, sender: str, recipient: str) -> tuple[Kind, ...]:
        return tuple(k for k in Kind if self.allows(sender, k, recipient))

    def office_ids(self) -> Iterable[str]:
        return (o.id for o in self.offices)
