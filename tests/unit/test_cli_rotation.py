"""`liaison keys rotate`, `liaison keys expiry` and `liaison directory rotate-key`, without subprocesses.

Also the pure ``exchange.core.expiry.expiry_report``: which keys count and when the
30-day warning starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from exchange.core import expiry, identity, model
from exchange.core.directory import verify_directory
from exchange.core.errors import ConfigError
from keys import directory_file, keystore, pki, rotation
from liaison.commands import directory as cmd_directory
from liaison.commands import keys as cmd_keys

CA_PW = b"test-ca-passphrase"  # the deployment CA key is always encrypted

PASS = "rotation cli passphrase"
NOW = 1_760_000_000_000
DAY = 86_400_000


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(keystore.PASSPHRASE_ENV, PASS)
    monkeypatch.setenv("LIAISON_CA_PASSPHRASE", "a-ca-passphrase-of-its-own")
    return tmp_path


def keys(*argv: str) -> int:
    return cmd_keys.main(["keys", *argv])


def directory(*argv: str) -> int:
    return cmd_directory.main(["directory", *argv])


def init_identity(root: Path, owner: str) -> Path:
    assert keys("init", "--office", owner, "--dir", str(root / owner)) == 0
    out = root / f"{owner}.public.json"
    assert keys("export-public", "--dir", str(root / owner), "--out", str(out)) == 0
    return out


def signed_v1(env: Path) -> Path:
    """A 2-of-2 directory v1 with office-a and office-b, signed by both authorities."""
    pubs = {o: init_identity(env, o) for o in ("auth-ru", "auth-tj", "office-a", "office-b")}
    draft, signed = env / "v1.json", env / "v1.pb"
    assert (
        directory(
            "init",
            *("--out", str(draft), "--deployment", "lab", "--threshold", "2"),
            *("--authority", f"auth-ru={pubs['auth-ru']}", "--authority", f"auth-tj={pubs['auth-tj']}"),
        )
        == 0
    )
    for office in ("office-a", "office-b"):
        assert (
            directory(
                "add-office",
                *("--file", str(draft), "--id", office, "--country", "RU", "--agency", "MVD"),
                *("--city", "Dushanbe", "--name", office, "--public", str(pubs[office])),
            )
            == 0
        )
    assert directory("set-limits", "--file", str(draft), "--max-recipients", "5") == 0
    sign_both(draft, signed, env)
    return signed


def sign_both(source: Path, out: Path, env: Path) -> None:
    for authority in ("auth-ru", "auth-tj"):
        assert (
            directory(
                "sign",
                *("--file", str(source), "--authority", authority, "--keys", str(env / authority)),
                *("--out", str(out)),
            )
            == 0
        )
        source = out


def test_keys_rotate_prints_the_public_identity_and_keeps_old_keys(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init_identity(env, "office-a")
    old = keystore.open_keystore(env / "office-a", PASS.encode())
    capsys.readouterr()
    assert (
        keys("rotate", "--dir", str(env / "office-a"), "--algorithms", "signing", "--overlap-days", "3") == 0
    )
    out = capsys.readouterr()
    owner, public = directory_file.public_from_json(json.loads(out.out))
    assert owner == "office-a"
    assert len(public) == 6  # 4 old + new Ed25519 and ML-DSA-65
    assert out.err.count("new ") == 2
    new = keystore.open_keystore(env / "office-a", PASS.encode())
    assert {k.key_id for k in old.keys} < {k.key_id for k in new.keys}
    assert new.key(model.Algorithm.X25519).key_id == old.key(model.Algorithm.X25519).key_id
    assert new.key(model.Algorithm.ED25519).key_id != old.key(model.Algorithm.ED25519).key_id
    assert keys("verify", "--dir", str(env / "office-a")) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--algorithms", "bogus"],
        ["--overlap-days", "-1"],
        ["--passphrase-file", "WRONG"],
    ],
    ids=["bad-group", "negative-overlap", "wrong-passphrase"],
)
def test_keys_rotate_refuses(env: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    init_identity(env, "office-a")
    before = (env / "office-a" / keystore.KEYSTORE_FILE).read_bytes()
    (env / "WRONG").write_text("not the passphrase\n")
    argv = [str(env / "WRONG") if a == "WRONG" else a for a in argv]
    try:
        code = keys("rotate", "--dir", str(env / "office-a"), *argv)
    except SystemExit as e:  # argparse refuses an unknown choice
        code = int(e.code or 0)
    assert code == 2
    assert (env / "office-a" / keystore.KEYSTORE_FILE).read_bytes() == before
    assert PASS not in capsys.readouterr().err


def test_directory_rotation_flow(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = signed_v1(env)
    new_public = env / "office-a.rotated.json"
    assert keys("rotate", "--dir", str(env / "office-a"), "--out", str(new_public)) == 0
    draft, v2 = env / "v2.json", env / "v2.pb"
    assert directory("next-version", "--from", str(v1), "--out", str(draft)) == 0
    capsys.readouterr()
    assert (
        directory(
            "rotate-key",
            *("--file", str(draft), "--owner", "office-a", "--public", str(new_public)),
            *("--overlap-days", "2"),
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("active") == 4
    assert out.count("retiring until") == 4
    # Nothing new a second time: a clear error, the draft unchanged.
    assert (
        directory("rotate-key", "--file", str(draft), "--owner", "office-a", "--public", str(new_public)) == 2
    )
    assert "no new keys" in capsys.readouterr().err
    sign_both(draft, v2, env)
    trusted = directory_file.load_signed(v1).directory
    signed = verify_directory(directory_file.read_signed_bytes(v2), trusted=trusted, anchor=None)
    assert signed.version == 2
    assert signed.directory.limits.max_recipients == 5  # limits survive the draft round trip
    office = signed.directory.office("office-a")
    assert office is not None
    rotated = keystore.open_keystore(env / "office-a", PASS.encode())
    for algorithm in model.Algorithm:
        current = office.current_key(algorithm, rotated.key(algorithm).not_before_ms)
        assert current is not None
        assert current.key_id == rotated.key(algorithm).key_id
    assert sum(k.status is model.KeyStatus.RETIRING for k in office.keys) == 4
    assert directory("show", "--file", str(v2)) == 0
    assert "retiring" in capsys.readouterr().out


def test_set_key_status_revokes_from_the_given_time(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = signed_v1(env)
    draft = env / "v2.json"
    assert directory("next-version", "--from", str(v1), "--out", str(draft)) == 0
    office = directory_file.load_draft(draft).office("office-b")
    assert office is not None
    kid = next(k.key_id for k in office.keys if k.algorithm is model.Algorithm.ED25519)
    argv = ("--file", str(draft), "--key-id", kid, "--status", "revoked", "--at-ms", str(NOW))
    assert directory("set-key-status", *argv) == 0
    assert f"({NOW} ms)" in capsys.readouterr().out
    key = directory_file.load_draft(draft).office("office-b").key(kid)  # type: ignore[union-attr]
    assert key is not None
    assert (key.status, key.revoked_at_ms) == (model.KeyStatus.REVOKED, NOW)
    assert directory("set-key-status", "--file", str(draft), "--key-id", "nope", "--status", "revoked") == 2


# --- expiry ---------------------------------------------------------------------------------


def test_expiry_report_counts_only_keys_in_use() -> None:
    old = identity.generate("office-a", NOW - 700 * DAY)  # ends NOW + 30 days
    assert {i.days_left for i in expiry.expiry_report(old, {}, NOW)} == {30}
    assert all(i.warn() for i in expiry.expiry_report(old, {}, NOW))
    rotated = rotation.rotate_identity(old, now_ms=NOW, algorithms=rotation.ROTATION_GROUPS["all"])
    items = expiry.expiry_report(rotated, {}, NOW)
    assert len(items) == 4
    assert {i.days_left for i in items} == {identity.DEFAULT_VALID_DAYS}
    assert not any(i.warn() for i in items)
    # Public keys from a directory: RETIRING and REVOKED keys are superseded, not reported.
    public = [
        dataclasses.replace(k, status=model.KeyStatus.RETIRING)
        if k.key_id in {x.key_id for x in old.keys}
        else k
        for k in rotated.public_keys()
    ]
    assert {i.name for i in expiry.expiry_report(public, {}, NOW)} == {i.name for i in items}


@pytest.mark.parametrize(
    ("days_before_end", "days_left", "warn"),
    [(31, 31, False), (30, 30, True), (1, 1, True), (0, 0, True), (-2, -2, True)],
    ids=["31-days", "30-days", "1-day", "last-day", "expired"],
)
def test_expiry_warns_from_30_days(days_before_end: int, days_left: int, warn: bool) -> None:
    ident = identity.generate("office-a", NOW, valid_days=100)
    now = NOW + (100 - days_before_end) * DAY
    items = expiry.expiry_report(ident, {}, now)
    assert {(i.days_left, i.warn()) for i in items} == {(days_left, warn)}
    assert ("expired" in items[0].describe()) is (days_left < 0)


def test_expiry_of_certificates(tmp_path: Path) -> None:
    issued_ca = pki.create_ca(tmp_path, "lab", passphrase=CA_PW)
    issued = pki.issue(tmp_path, "node", "office-a", ["127.0.0.1"], ca_passphrase=CA_PW)
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    pems = {"ca.crt": issued_ca.cert.read_bytes(), "office-a.crt": issued.cert.read_bytes()}
    items = expiry.expiry_report([], pems, now)
    assert [(i.name, i.kind) for i in items] == [("office-a.crt", "certificate"), ("ca.crt", "certificate")]
    assert items[0].days_left in (pki.LEAF_VALID_DAYS - 1, pki.LEAF_VALID_DAYS)
    with pytest.raises(ConfigError, match=r"bad\.crt"):
        expiry.expiry_report([], {"bad.crt": b"not pem"}, now)


def test_keys_expiry_command(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys("init", "--office", "office-a", "--dir", str(env / "ka"), "--valid-days", "20") == 0
    assert keys("pki", "init", "--dir", str(env / "pki"), "--deployment", "lab") == 0
    capsys.readouterr()
    assert keys("expiry", "--dir", str(env / "ka"), "--certs", str(env / "pki")) == 0
    out = capsys.readouterr().out
    assert out.count("warning: key ") == 4  # 20-day keys: inside the 30-day warning
    assert "warning: certificate" not in out
    assert "ca.crt" in out
    assert keys("expiry", "--dir", str(env / "ka"), "--json", "--warn-days", "5") == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["owner"] == "office-a"
    assert [i["warning"] for i in doc["items"]] == [False] * 4
    assert captured.err == ""
    assert keys("expiry", "--dir", str(env / "missing")) == 2
