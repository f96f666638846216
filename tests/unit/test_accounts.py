"""The rendered NATS accounts (ADR 0011): what each office's account can reach, read from the config.

The attacks through a real nats-server are in tests/integration/test_reply_subjects.py;
these check the rendered structure that makes them fail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from exchange.core import wire
from exchange.nats.permissions import STREAMS_ACCOUNT, office_services, render_accounts

OFFICES = ("ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow")
GATEWAY_DN = "CN=embassy-gateway"


def _accounts() -> dict[str, Any]:
    text = render_accounts(gateway_dns=[GATEWAY_DN], office_dns={o: [f"CN={o}"] for o in OFFICES})
    assert text.startswith("accounts {")
    accounts: dict[str, Any] = json.loads(text.removeprefix("accounts "))
    return accounts


def test_only_the_gateway_is_in_the_streams_account_and_only_it_has_jetstream() -> None:
    accounts = _accounts()
    assert [u["user"] for u in accounts[STREAMS_ACCOUNT]["users"]] == [GATEWAY_DN]
    assert accounts[STREAMS_ACCOUNT]["jetstream"] == "enabled"
    assert all("jetstream" not in accounts[o] for o in OFFICES)
    assert all(len(accounts[o]["users"]) == 1 for o in OFFICES)


@pytest.mark.parametrize("office", OFFICES)
def test_an_office_account_imports_nothing_that_names_another_office(office: str) -> None:
    imports = _accounts()[office]["imports"]
    subjects = [i.get("service", i.get("stream"))["subject"] for i in imports]
    for other in OFFICES:
        if other != office:
            assert not any(other in s for s in subjects), (other, subjects)
    # Writes only on its own out and attachment subjects; no consumer create, no stream admin.
    assert wire.out_subject(office) in subjects
    assert not any(".CREATE." in s or ".DELETE." in s or ".UPDATE." in s for s in subjects), subjects


def test_every_jetstream_api_import_is_renamed_to_the_office_domain() -> None:
    for office in OFFICES:
        for entry in _accounts()[office]["imports"]:
            subject = entry.get("service", {}).get("subject", "")
            if subject.startswith(f"{wire.JS_API}."):
                assert entry["to"] == f"$JS.{wire.OFFICE_JS_DOMAIN}.API." + subject.removeprefix("$JS.API.")


def test_each_export_names_exactly_the_offices_that_import_it() -> None:
    """One export per subject, naming exactly its importers: who may call what, in one place."""
    exports = _accounts()[STREAMS_ACCOUNT]["exports"]
    subjects = [e.get("service", e.get("stream")) for e in exports]
    assert len(subjects) == len(set(subjects))
    for export in exports:
        subject = export.get("service", export.get("stream"))
        users = {o for o in OFFICES if any(s.subject == subject for s in office_services(o))}
        if "stream" in export:
            users = set(OFFICES)  # the directory subject
        assert set(export["accounts"]) == users, subject
    pulls = [e for e in exports if ".CONSUMER.MSG.NEXT." in e.get("service", "")]
    assert len(pulls) == len(OFFICES)
    assert all(e["response_type"] == "stream" for e in pulls)
