"""Foreign exceptions stop at the package boundaries (STYLE.md habit 5).

One test per boundary: a provoked foreign failure (bad TOML, an unreadable
file, a missing or garbage PEM file, a malformed lab.json, an unreachable
node) comes out as the project's own error, with a one-line message and the
foreign exception kept as ``__cause__``. First ``map_exceptions`` itself, the
table every boundary uses. Codec and SQLite boundaries are tested beside
their packages.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchange.client import connection
from exchange.client.connection import ClientTls
from exchange.core.errors import (
    ConfigError,
    KeystoreError,
    LiaisonError,
    StoreError,
    map_exceptions,
    reason,
)
from exchange.core.expiry import days_to_expiry
from exchange.core.identity import generate
from exchange.office.config import load_office_config
from exchange.runtime.config import NatsConfig
from exchange.runtime.lifecycle import load_directory, nats_tls
from gateway.config import load_gateway_config
from keys import directory_file, keystore, pki
from liaison.cli import main
from liaison.natsserver import free_port

CA_PW = b"test-ca-passphrase"  # the deployment CA key is always encrypted

GARBAGE_PEM = b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
RU = "ru-mvd-dushanbe"
SECRET = "s3cr3t-plaintext"  # planted in bad input: no error message may repeat it


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text
    assert SECRET not in text
    return text


# --- the helper -----------------------------------------------------------------------


def test_map_exceptions_maps_the_first_matching_entry_and_keeps_the_cause() -> None:
    table = {FileNotFoundError: KeystoreError, OSError: ConfigError}
    with (
        pytest.raises(KeystoreError, match=r"^reading x: No such file") as caught,
        map_exceptions(table, "reading x"),
    ):
        Path("/nonexistent/liaison-test").read_bytes()
    assert isinstance(caught.value.__cause__, FileNotFoundError)


@pytest.mark.parametrize(
    "raised",
    [
        pytest.param(KeyError("k"), id="foreign-not-in-table"),
        pytest.param(StoreError("ours"), id="ours-passes-unchanged"),
    ],
)
def test_map_exceptions_lets_unlisted_exceptions_through(raised: Exception) -> None:
    with pytest.raises(type(raised)) as caught, map_exceptions({ValueError: ConfigError}, "x"):
        raise raised
    assert caught.value is raised


def test_map_exceptions_without_what_keeps_the_message() -> None:
    with (
        pytest.raises(ConfigError, match=r"^bad office id$"),
        map_exceptions({ValueError: ConfigError}),
    ):
        raise ValueError("bad office id")


def test_reason_never_quotes_the_bad_bytes() -> None:
    with pytest.raises(UnicodeDecodeError) as caught:
        (SECRET.encode() + b"\xff").decode()
    assert reason(caught.value) == "not UTF-8"
    assert reason(RecursionError("maximum recursion depth exceeded")) == "nested too deeply"


# --- configuration files (exchange.runtime.config, exchange.office.config, gateway.config) ---


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "node.toml"
    path.write_bytes(data)
    return path


CONFIG_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing-file": (lambda d: d / "absent.toml", "cannot read config file .*: No such file"),
    "a-directory": (lambda d: d, "cannot read config file .*: Is a directory"),
    "bad-toml": (lambda d: _write(d, f'[office\nid = "{SECRET}"\n'.encode()), "not valid TOML"),
    "not-utf8": (lambda d: _write(d, SECRET.encode() + b' = "\xff"\n'), "not valid TOML: not UTF-8"),
    "nested-too-deeply": (lambda d: _write(d, b"x = " + b"[" * 100_000), "not valid TOML"),
    "bad-id": (lambda d: _write(d, b'[office]\nid = "NO SPACES"\n[keys]\ndir = "k"\n'), "office"),
}


@pytest.mark.parametrize("load", [load_office_config, load_gateway_config], ids=["office", "gateway"])
@pytest.mark.parametrize("case", CONFIG_CASES, ids=list(CONFIG_CASES))
def test_config_files(tmp_path: Path, load: Callable[[Path], Any], case: str) -> None:
    make, pattern = CONFIG_CASES[case]
    if case == "bad-id" and load is load_gateway_config:
        pattern = "gateway"  # the gateway file has no [office]; its missing [gateway] is named
    with pytest.raises(ConfigError, match=pattern) as caught:
        load(make(tmp_path))
    _one_line(caught.value)


# --- lab.json and client TLS files (exchange.client.connection) ----------------------------


def _lab(tmp_path: Path, content: bytes) -> Path:
    (tmp_path / "lab.json").write_bytes(content)
    return tmp_path


LAB_CASES: dict[str, tuple[bytes | None, str]] = {
    "no-lab-json": (None, r"cannot read .*lab.json \(is the lab running\?\): No such file"),
    "not-json": (b'{"offices": [' + SECRET.encode(), r"cannot read .*lab.json \(is the lab running\?\)"),
    "not-utf8": (b"\xff\xfe", "not UTF-8"),
    "not-an-object": (b"[1, 2]", "is not a lab description"),
    "no-such-office": (b'{"offices": [{"id": "a", "grpc": "x"}]}', "no office 'ru' in .* \\(offices: a\\)"),
    "tls-entry-lacks-a-file": (
        b'{"offices": [{"id": "ru", "grpc": "x", "client_tls": {"ca": "c"}}]}',
        "a TLS entry lacks a file",
    ),
}


@pytest.mark.parametrize("case", LAB_CASES, ids=list(LAB_CASES))
def test_lab_json(tmp_path: Path, case: str) -> None:
    content, pattern = LAB_CASES[case]
    lab = _lab(tmp_path, content) if content is not None else tmp_path
    with pytest.raises(ConfigError, match=pattern) as caught:
        connection.lab_endpoint(lab, "ru")
    _one_line(caught.value)


@pytest.mark.parametrize(
    ("lookup", "pattern"),
    [
        pytest.param(connection.lab_gateway, "has no gateway.grpc", id="gateway"),
        pytest.param(lambda lab: connection.lab_node(lab, "gw"), "no node 'gw'", id="node"),
    ],
)
def test_lab_json_without_the_node(tmp_path: Path, lookup: Callable[[Path], Any], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        lookup(_lab(tmp_path, b'{"offices": []}'))


@pytest.fixture
def tls_files(tmp_path: Path) -> ClientTls:
    ca = pki.create_ca(tmp_path, "lab", passphrase=CA_PW)
    issued = pki.issue(tmp_path, "client", "agency", ca_passphrase=CA_PW)
    return ClientTls(ca.cert, issued.cert, issued.key)


TLS_CASES: dict[str, tuple[str, bytes | None, str]] = {
    "missing-ca": ("ca", None, "cannot read TLS file .*: No such file"),
    "missing-key": ("key", None, "cannot read TLS file .*: No such file"),
    "garbage-ca": ("ca", GARBAGE_PEM, "is not a PEM CA certificate"),
    "garbage-cert": ("cert", SECRET.encode(), "is not a PEM certificate"),
    "garbage-key": ("key", SECRET.encode(), "is not a PEM private key"),
    "empty-key": ("key", b"", "is not a PEM private key"),
}


@pytest.mark.parametrize("case", TLS_CASES, ids=list(TLS_CASES))
def test_client_tls_files(tls_files: ClientTls, case: str) -> None:
    which, content, pattern = TLS_CASES[case]
    path: Path = getattr(tls_files, which)
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    for open_channel in (connection.channel, connection.aio_channel):
        with pytest.raises(ConfigError, match=pattern) as caught:
            open_channel("127.0.0.1:1", tls_files)
        _one_line(caught.value)


def test_client_tls_files_that_are_good_make_credentials(tls_files: ClientTls) -> None:
    ca, cert, key = tls_files.read()
    assert b"CERTIFICATE" in ca
    assert b"CERTIFICATE" in cert
    assert b"PRIVATE KEY" in key
    connection.channel("127.0.0.1:1", tls_files).close()


# --- certificates, NATS TLS and the pinned directory (exchange.core.expiry, runtime.lifecycle) ---


def test_certificate_expiry_of_garbage_pem() -> None:
    with pytest.raises(ConfigError, match="not a PEM certificate") as caught:
        days_to_expiry(GARBAGE_PEM, dt.datetime.now(dt.UTC))
    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.parametrize("which", ["ca", "cert"])
def test_nats_tls_files(tls_files: ClientTls, which: str) -> None:
    getattr(tls_files, which).write_bytes(GARBAGE_PEM)
    cfg = NatsConfig(url="tls://127.0.0.1:1", ca=tls_files.ca, cert=tls_files.cert, key=tls_files.key)
    with pytest.raises(ConfigError, match="cannot load NATS TLS files") as caught:
        nats_tls(cfg)
    _one_line(caught.value)


def test_pinned_directory_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read directory .*: No such file"):
        load_directory(tmp_path / "directory.pb")


# --- key management (keys) ---------------------------------------------------------------


def _keystore_in_a_file(d: Path) -> Path:
    return keystore.create(_write(d, b""), generate(RU, now_ms=1_700_000_000_000), b"pass")


KEYS_CASES: dict[str, tuple[Callable[[Path], Any], type[LiaisonError], str]] = {
    "pki-chain-garbage": (lambda _: pki.check_chain(b"", GARBAGE_PEM), ConfigError, "not a PEM certificate"),
    "passphrase-file-is-a-directory": (
        keystore.passphrase_from,
        ConfigError,
        "cannot read passphrase file .*: Is a directory",
    ),
    "keystore-dir-is-a-file": (_keystore_in_a_file, KeystoreError, "cannot create keystore directory"),
    "directory-draft-missing": (
        lambda d: directory_file.load_draft(d / "absent.json"),
        ConfigError,
        "cannot read .*: No such file",
    ),
}


@pytest.mark.parametrize("case", KEYS_CASES, ids=list(KEYS_CASES))
def test_keys(tmp_path: Path, case: str) -> None:
    call, error, pattern = KEYS_CASES[case]
    with pytest.raises(error, match=pattern) as caught:
        call(tmp_path)
    _one_line(caught.value)


# --- the CLI (liaison.cli) ----------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(("status", "m-1"), id="status"),
        pytest.param(("inbox",), id="inbox"),
        pytest.param(("offices",), id="offices"),
        pytest.param(("audit", "head"), id="audit-head"),
    ],
)
def test_cli_against_an_unreachable_endpoint(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there
    code, err = _cli(capsys, *argv, "--endpoint", endpoint, "--timeout", "2")
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("error: UNAVAILABLE"), err


NO_TLS_FILES = ("--ca", "{tmp}/ca", "--cert", "{tmp}/c", "--key", "{tmp}/k")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        pytest.param(("status", "m-1", "--lab", "{tmp}", "--office", RU), "is the lab running", id="no-lab"),
        pytest.param(("audit", "head", "--lab", "{tmp}"), "is the lab running", id="audit-no-lab"),
        pytest.param(
            ("status", "m-1", "--endpoint", "127.0.0.1:1", *NO_TLS_FILES),
            "cannot read TLS file",
            id="tls-files-missing",
        ),
        pytest.param(("status", "m-1", "--endpoint", "127.0.0.1:1", "--ca", "x"), "needs all", id="tls-half"),
        pytest.param(
            ("directory", "next-version", "--from", "{tmp}/absent.pb", "--out", "{tmp}/draft.json"),
            "cannot read",
            id="directory-missing",
        ),
    ],
)
def test_cli_local_failures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: tuple[str, ...], needle: str
) -> None:
    code, err = _cli(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("error: "), err
    assert needle in err


def test_cli_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The entry point, as an operator runs it: exit status 2, one line on stderr, nothing on stdout."""
    endpoint = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "liaison.cli", "status", "m-1", "--endpoint", endpoint, "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: UNAVAILABLE"), done.stderr
    assert not done.stdout
