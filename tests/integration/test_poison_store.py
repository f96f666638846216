"""Both audit stores take the same records: what one accepts, the other does, and readers read.

Issue 11, section 3. The PostgreSQL leg needs ``LIAISON_TEST_PG_DSN`` (a fresh
schema per test, as in ``test_audit_store``).
"""

from __future__ import annotations

import pytest

from exchange.core.errors import StoreError
from gateway.audit.codec import decode_record, encode_record
from gateway.audit.errors import MetadataError
from gateway.audit.store import AuditStore
from tests.integration.test_audit_store import open_store, store  # noqa: F401 - fixtures
from tests.unit.test_poison_bounds import largest_record


@pytest.mark.parametrize(
    "column",
    ["case_id", "message_id", "sender", "recipients"],
)
def test_a_control_character_is_refused_alike_before_any_sql(store: AuditStore, column: str) -> None:  # noqa: F811
    """Failed before the fix: SQLite stored a NUL, PostgreSQL's COPY failed (a StoreError).

    Now both refuse it with the same MetadataError before any SQL, and the log
    stays writable.
    """
    value: object = ["office-a", "bad\x00"] if column == "recipients" else "bad\x00id"
    with pytest.raises(MetadataError, match="control characters"):
        store.append([(b"entry", {column: value})])
    assert store.append([(b"next", {"case_id": "fine"})]) == [0]


def test_the_largest_record_the_gateway_builds_is_stored_and_read(store: AuditStore) -> None:  # noqa: F811
    data = encode_record(largest_record())
    try:
        [index] = store.append([(data, largest_record().index_columns())])
    except StoreError as e:  # pragma: no cover - the assertion below explains
        pytest.fail(f"the store refused the largest record: {e}")
    assert decode_record(store.entry(index).entry) == largest_record()
