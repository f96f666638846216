"""Console credentials and the failed-login throttle, with a fake clock (no server)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from exchange.core.errors import ConfigError
from gateway.console.auth import FAILED_LOGIN_WINDOW_S, MAX_FAILED_LOGINS, LoginThrottle, load_operators


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_each_token_names_its_operator(tmp_path: Path) -> None:
    path = tmp_path / "ops"
    path.write_text(f"# who  sha256\nalice {_digest('a' * 32)}\n\nbob {_digest('b' * 32)}  # desk 2\n")
    operators = load_operators(path)
    assert operators.who("a" * 32) == "alice"
    assert operators.who("b" * 32) == "bob"
    assert operators.who("c" * 32) is None
    assert operators.who(None) is None


BAD_FILES = {
    "empty": "# nobody\n",
    "no-digest": "alice\n",
    "short-digest": "alice abcd\n",
    "upper-name": f"Alice {_digest('x')}\n",
    "same-name-twice": f"alice {_digest('x')}\nalice {_digest('y')}\n",
    "same-token-twice": f"alice {_digest('x')}\nbob {_digest('x')}\n",
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_operators_files_are_one_line_errors(tmp_path: Path, case: str) -> None:
    path = tmp_path / "ops"
    path.write_text(BAD_FILES[case])
    with pytest.raises(ConfigError) as caught:
        load_operators(path)
    assert "\n" not in str(caught.value)


def test_the_throttle_locks_an_address_after_the_limit_and_opens_after_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(MAX_FAILED_LOGINS - 1):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after_s("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert 0 < throttle.retry_after_s("10.0.0.1") <= FAILED_LOGIN_WINDOW_S + 1
    assert throttle.retry_after_s("10.0.0.2") == 0  # another address is not affected
    clock.now += FAILED_LOGIN_WINDOW_S + 1
    assert throttle.retry_after_s("10.0.0.1") == 0
