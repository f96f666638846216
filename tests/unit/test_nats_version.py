"""The nats-server version floor: 2.14.0, or 2.12.7 on the 2.12 line (leaf-node permissions)."""

from __future__ import annotations

import pytest

from exchange.core.errors import ConfigError
from exchange.nats.version import MAX_VERSION_TEXT, check_nats_server_version

ACCEPTED = ["2.14.0", "v2.14.1", "nats-server: v2.15.1", "2.12.7", "2.12.8+build.3", "3.0.0", "2.14.1-RC.1"]
REFUSED = {
    "2.12.6": "2.12.6",
    "2.13.9": "2.13.9",  # not the patched line: needs 2.14.0
    "2.11.4": "2.11.4",
    "2.10.22": "2.10.22",
    "2.14.0-RC.2": "pre-release of the minimum",
    "2.12.7-beta": "pre-release of the patched minimum",
    "1.4.1": "1.4.1",
}
GARBAGE = {
    "empty": "",
    "word": "latest",
    "two-parts": "2.14",
    "suffix-text": "2.14.0 and more",
    "long": "2" * 300,
}


@pytest.mark.parametrize("text", ACCEPTED)
def test_versions_that_enforce_leaf_permissions_pass(text: str) -> None:
    check_nats_server_version(text)


@pytest.mark.parametrize("text", list(REFUSED), ids=list(REFUSED.values()))
def test_older_versions_are_refused_with_the_minimum(text: str) -> None:
    with pytest.raises(ConfigError, match=r"need 2\.14\.0 or later \(or 2\.12\.7 on the 2\.12 line\)"):
        check_nats_server_version(text)


@pytest.mark.parametrize("case", list(GARBAGE))
def test_unreadable_versions_are_refused(case: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_nats_server_version(GARBAGE[case])
    assert len(str(caught.value)) < MAX_VERSION_TEXT
