"""`liaison keys …` and `liaison directory …` end to end, without subprocesses."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from exchange.core import primitives
from exchange.core.directory import TrustAnchor, verify_directory
from exchange.core.model import Kind
from keys import directory_file, keystore
from liaison.commands import directory as cmd_directory
from liaison.commands import keys as cmd_keys

PASS = "lab passphrase"


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


def test_keys_init_verify_export(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pub = init_identity(env, "office-a")
    assert "ed25519" in capsys.readouterr().out
    assert keys("verify", "--dir", str(env / "office-a")) == 0
    assert capsys.readouterr().out.startswith("ok: keystore of office-a: 4 keys")
    owner, public = directory_file.load_public(pub)
    assert owner == "office-a"
    assert len(public) == 4
    assert keys("export-public", "--dir", str(env / "office-a")) == 0
    assert json.loads(capsys.readouterr().out)["owner"] == "office-a"


def test_keys_verify_wrong_passphrase(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    init_identity(env, "office-a")
    capsys.readouterr()
    bad = env / "bad-pass"
    bad.write_text("not it\n")
    assert keys("verify", "--dir", str(env / "office-a"), "--passphrase-file", str(bad)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "not it" not in err
    monkeypatch.delenv(keystore.PASSPHRASE_ENV)
    assert keys("verify", "--dir", str(env / "office-a")) == 2
    assert keystore.PASSPHRASE_ENV in capsys.readouterr().err


def test_pki_commands(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki_dir = env / "pki"
    assert keys("pki", "init", "--dir", str(pki_dir), "--deployment", "lab") == 0
    assert keys("pki", "issue", "--dir", str(pki_dir), "--kind", "node", "--name", "office-a") == 0
    assert keys("pki", "issue", "--dir", str(pki_dir), "--kind", "client", "--name", "agency-1") == 0
    assert stat.S_IMODE((pki_dir / "office-a.key").stat().st_mode) == 0o600
    assert (pki_dir / "agency-1.crt").exists()
    assert keys("pki", "issue", "--dir", str(pki_dir), "--kind", "node", "--name", "Bad Name") == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_full_directory_flow(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pubs = {o: init_identity(env, o) for o in ("embassy-ru", "embassy-tj", "office-a", "office-b", "gw-1")}
    draft, signed, v2draft, v2 = (env / n for n in ("d.json", "d.pb", "d2.json", "d2.pb"))
    assert (
        directory(
            "init",
            "--out",
            str(draft),
            "--deployment",
            "lab",
            "--threshold",
            "2",
            "--authority",
            f"embassy-ru={pubs['embassy-ru']}",
            "--authority",
            f"embassy-tj={pubs['embassy-tj']}",
        )
        == 0
    )
    for office, cc in (("office-a", "RU"), ("office-b", "TJ")):
        assert (
            directory(
                "add-office",
                "--file",
                str(draft),
                "--id",
                office,
                "--country",
                cc,
                "--agency",
                "MVD",
                "--city",
                "Dushanbe",
                "--name",
                f"{office} office",
                "--public",
                str(pubs[office]),
            )
            == 0
        )
    assert (
        directory(
            "add-gateway",
            "--file",
            str(draft),
            "--id",
            "gw-1",
            "--country",
            "RU",
            "--public",
            str(pubs["gw-1"]),
        )
        == 0
    )
    assert (
        directory(
            "set-policy",
            "--file",
            str(draft),
            "--sender",
            "office-a",
            "--kinds",
            "alert,case-message",
            "--recipients",
            "office-b",
        )
        == 0
    )
    assert (
        directory(
            "set-policy",
            "--file",
            str(draft),
            "--sender",
            "office-b",
            "--kinds",
            "case-message",
            "--recipients",
            "*",
        )
        == 0
    )
    assert (
        directory("set-limits", "--file", str(draft), "--max-recipients", "8", "--minimum-suite", "hybrid-pq")
        == 0
    )
    # policy naming an office that does not exist is refused
    assert (
        directory(
            "set-policy",
            "--file",
            str(draft),
            "--sender",
            "office-x",
            "--kinds",
            "alert",
            "--recipients",
            "office-b",
        )
        == 2
    )

    # the wrong keystore for an authority is refused
    assert (
        directory(
            "sign",
            "--file",
            str(draft),
            "--authority",
            "embassy-ru",
            "--keys",
            str(env / "embassy-tj"),
            "--out",
            str(signed),
        )
        == 2
    )
    assert (
        directory(
            "sign",
            "--file",
            str(draft),
            "--authority",
            "embassy-ru",
            "--keys",
            str(env / "embassy-ru"),
            "--out",
            str(signed),
        )
        == 0
    )
    capsys.readouterr()
    # one of two: not valid yet
    assert directory("verify", "--file", str(signed)) == 2
    assert "1 of the 2 required" in capsys.readouterr().err
    assert (
        directory(
            "sign",
            "--file",
            str(signed),
            "--authority",
            "embassy-tj",
            "--keys",
            str(env / "embassy-tj"),
            "--out",
            str(signed),
        )
        == 0
    )
    capsys.readouterr()
    assert directory("verify", "--file", str(signed), "--anchor", str(signed)) == 0
    verdict = capsys.readouterr().out
    assert verdict.startswith("valid: lab v1")
    assert "embassy-ru, embassy-tj" in verdict

    d = directory_file.load_signed(signed).directory
    assert d.limits.max_recipients == 8
    assert d.allows("office-a", Kind.ALERT, "office-b")
    assert d.allows("office-b", Kind.CASE_MESSAGE, "office-a")
    assert not d.allows("office-b", Kind.ALERT, "office-a")
    verify_directory(signed.read_bytes(), trusted=None, anchor=TrustAnchor.from_directory(d))

    assert directory("show", "--file", str(signed)) == 0
    table = capsys.readouterr().out
    assert "office-a" in table
    assert "ml_dsa_65" in table
    assert "2 of 2 must sign" in table
    assert "active" in table
    assert "minimum suite hybrid-pq" in table
    assert directory("show", "--file", str(signed), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["signed"]["signatures_from"] == ["embassy-ru", "embassy-tj"]
    assert directory("show", "--file", str(draft)) == 0
    assert "UNSIGNED DRAFT" in capsys.readouterr().out

    # version 2: revoke office-b's Ed25519 key, sign, verify against v1; v1 against v2 is rollback.
    assert directory("next-version", "--from", str(signed), "--out", str(v2draft)) == 0
    b_key = next(k for k in d.office("office-b").keys if k.algorithm.name == "ED25519")  # type: ignore[union-attr]
    assert (
        directory(
            "set-key-status",
            "--file",
            str(v2draft),
            "--key-id",
            b_key.key_id,
            "--status",
            "revoked",
            "--at-ms",
            "1",
        )
        == 0
    )
    for auth in ("embassy-tj", "embassy-ru"):
        src = v2 if v2.exists() else v2draft
        assert (
            directory(
                "sign", "--file", str(src), "--authority", auth, "--keys", str(env / auth), "--out", str(v2)
            )
            == 0
        )
    capsys.readouterr()
    assert directory("verify", "--file", str(v2), "--trusted", str(signed)) == 0
    assert "against trusted v1" in capsys.readouterr().out
    assert directory("verify", "--file", str(signed), "--trusted", str(v2)) == 2
    assert "does not move forward" in capsys.readouterr().err
    assert directory("show", "--file", str(v2)) == 0
    assert "REVOKED" in capsys.readouterr().out


def test_the_ca_key_is_encrypted_at_rest_and_opens_only_with_its_passphrase(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone who copies the CA folder (a backup, a stolen disk) cannot issue a certificate.

    Failed before the fix (by construction: `pki init` called ``create_ca`` without a
    passphrase): ``ca.key`` was a clear PKCS#8 key, so anyone who read it could issue node
    and agency certificates of the deployment.
    """
    pki_dir = env / "pki"
    assert keys("pki", "init", "--dir", str(pki_dir), "--deployment", "lab") == 0
    pem = (pki_dir / "ca.key").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    monkeypatch.setenv("LIAISON_CA_PASSPHRASE", "a-guess")
    capsys.readouterr()
    assert keys("pki", "issue", "--dir", str(pki_dir), "--kind", "node", "--name", "rogue") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert "a-guess" not in err
    assert not (pki_dir / "rogue.crt").exists()
    monkeypatch.delenv("LIAISON_CA_PASSPHRASE")
    assert keys("pki", "issue", "--dir", str(pki_dir), "--kind", "node", "--name", "rogue") == 2
    assert "LIAISON_CA_PASSPHRASE" in capsys.readouterr().err


def test_a_clear_ca_key_is_refused(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CA key left unencrypted (an old deployment) is not used to issue anything."""
    pki_dir = env / "pki"
    assert keys("pki", "init", "--dir", str(pki_dir), "--deployment", "lab") == 0
    key = primitives.load_tls_key_pem((pki_dir / "ca.key").read_bytes(), b"a-ca-passphrase-of-its-own")
    (pki_dir / "ca.key").write_bytes(primitives.tls_key_pem(key, None))
    capsys.readouterr()
    assert keys("pki", "issue", "--dir", str(pki_dir), "--kind", "node", "--name", "n1") == 2
    assert "is not encrypted at rest" in capsys.readouterr().err
