"""The witness trusts no first head, and no head out of its time; `audit verify --require-cosign`.

Against a lab of real processes (nats-server, the gateway over gRPC with mutual
TLS): the witness is configured by ``liaison witness init`` and runs its rounds
in-process against the real AuditService; ``liaison audit verify`` is the CLI.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.client.sdk import Client
from exchange.core.clock import now_ms
from exchange.runtime.lifecycle import load_directory
from gateway.client import AuditClient
from gateway.witness.checks import MAX_HEAD_FUTURE_MS
from gateway.witness.runner import Witness, load_state, load_witness_config
from liaison.cli import main
from liaison.lab.lab import Lab
from liaison.serve.witness import open_witness_key, save_state
from tests.integration.labutil import INVENTORY

WITNESS = "tj-embassy-moscow"
RU, TJ = "ru-mvd-dushanbe", "tj-mvd-moscow"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("pin"), inventory=INVENTORY) as lab:
        with Client.from_lab(lab.root, RU) as client:
            for i in range(3):
                client.send_case_message([TJ], case_id="PIN-1", text=f"m{i}")
        yield lab


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(list(argv))
    return code, out.getvalue()


def init(lab: Lab, folder: Path, *extra: str) -> Path:
    code, out = cli(
        "witness", "init", "--dir", str(folder), "--lab", str(lab.root), "--authority", WITNESS, *extra
    )
    assert code == 0
    return Path(out.strip())


def one_round(config: Path, *, clock_offset_ms: int = 0) -> None:
    """One witness round in-process, with the witness's clock moved by ``clock_offset_ms``."""
    cfg = load_witness_config(config)
    directory = load_directory(cfg.directory)
    key = open_witness_key(cfg, directory)
    with AuditClient(cfg.endpoint, tls=cfg.tls, timeout=cfg.timeout_s) as client:
        witness = Witness(
            cfg, client, directory, key, save_state=save_state, clock=lambda: now_ms() + clock_offset_ms
        )
        witness.round()


def cosigners(lab: Lab) -> list[str]:
    with AuditClient.from_lab(lab.root) as audit:
        return [c.witness for c in audit.tree_head().cosignatures]


def current_head(lab: Lab, path: Path) -> dict[str, object]:
    code, out = cli("audit", "head", "--lab", str(lab.root), "--json")
    assert code == 0
    path.write_text(out)
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return doc


def test_a_witness_without_a_confirmed_pin_refuses_to_trust_the_first_head(lab: Lab, tmp_path: Path) -> None:
    """``witness init`` with no pin, then a round against the real gateway: nothing co-signed.

    Failed before the fix (run against the base commit): the witness co-signed the first
    head the gateway showed it (trust on first use): its state's ``last`` was the head of
    size 6, with ``cosigned_at_ms`` set; a gateway that forked before the witness started
    would have been vouched for.
    """
    config = init(lab, tmp_path / "w")
    one_round(config)
    assert load_state(load_witness_config(config).state, WITNESS).last is None
    assert WITNESS not in cosigners(lab)


def test_a_witness_pinned_to_a_confirmed_head_cosigns_what_extends_it(lab: Lab, tmp_path: Path) -> None:
    """The operator confirms a head (``audit head --json``), passes it to ``init --head``: co-signed."""
    head = current_head(lab, tmp_path / "head.json")
    config = init(lab, tmp_path / "w", "--head", str(tmp_path / "head.json"))
    with Client.from_lab(lab.root, RU) as client:
        client.send_case_message([TJ], case_id="PIN-2", text="after the pin")  # the log grows past the pin
    one_round(config)
    last = load_state(load_witness_config(config).state, WITNESS).last
    assert last is not None
    assert last.size >= int(str(head["size"]))
    assert WITNESS in cosigners(lab)


def test_a_pin_the_gateway_contradicts_raises_the_alarm(lab: Lab, tmp_path: Path) -> None:
    """A pin of the current size with another root than the gateway signed: alarm, no co-signature."""
    head = current_head(lab, tmp_path / "head.json")
    config = init(lab, tmp_path / "w", "--pin", f"{head['size']}:{'ab' * 32}")
    one_round(config)
    state = load_state(load_witness_config(config).state, WITNESS)
    assert state.last is None
    assert state.alarm is not None
    assert state.alarm.kind in ("fork", "inconsistent-history")


def test_a_head_from_the_future_is_refused(lab: Lab, tmp_path: Path) -> None:
    """The gateway's head is dated ahead of the witness's clock by more than the bound: refused.

    The witness's clock is set 10 minutes behind (the same as a gateway clock 10
    minutes ahead). Failed before the fix (base commit, same round without a pin): the
    witness never compared a head's time with its own clock: its state's ``last`` was set.
    """
    current_head(lab, tmp_path / "head.json")
    config = init(lab, tmp_path / "w", "--head", str(tmp_path / "head.json"))
    one_round(config, clock_offset_ms=-(MAX_HEAD_FUTURE_MS + 600_000))
    assert load_state(load_witness_config(config).state, WITNESS).last is None
    one_round(config)  # the same head, by a clock that agrees: co-signed
    assert load_state(load_witness_config(config).state, WITNESS).last is not None


def test_audit_verify_require_cosign(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``audit verify --require-cosign`` fails while no head is co-signed, passes once one is.

    Failed before the fix: the option did not exist (``SystemExit: 2``), and ``audit
    verify`` exits 0 on a log no witness has co-signed (asserted below, unchanged).
    """
    with Lab(tmp_path_factory.mktemp("cosign"), inventory=INVENTORY) as lab:
        with Client.from_lab(lab.root, RU) as client:
            client.send_case_message([TJ], case_id="COSIGN", text="one")
        root = lab.root
        code, out = cli("audit", "verify", "--lab", str(root), "--require-cosign")
        assert code == 1
        assert "none of the" in out
        assert "co-signed by a witness" in out
        code, _ = cli("audit", "verify", "--lab", str(root))
        assert code == 0  # without the option: what it checked before
        head = tmp_path_factory.mktemp("cosign-head") / "head.json"
        current_head(lab, head)
        one_round(init(lab, head.parent / "w", "--head", str(head)))
        code, out = cli("audit", "verify", "--lab", str(root), "--require-cosign")
        assert code == 0, out
        assert "witnessed up to size" in out
        code, out = cli("audit", "verify", "--lab", str(root), "--require-cosign", WITNESS)
        assert code == 0, out
        code, out = cli("audit", "verify", "--lab", str(root), "--require-cosign", "ru-embassy-dushanbe")
        assert code == 1
        assert "no verified tree head is co-signed by ru-embassy-dushanbe" in out
