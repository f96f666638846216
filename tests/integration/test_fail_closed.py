"""Fail closed (issue 11, section 7): attacks through the real lab, CLI and node processes.

One lab per module. Each test is an attack by a party holding valid
credentials of its own (an office, an agency system, a local user of the
operator's machine) and says in its docstring what it did before the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from exchange.client.sdk import Client
from exchange.core import primitives
from exchange.core.errors import ConfigError, WrongPassphraseError
from gateway.console.auth import FAILED_LOGIN_WINDOW_S, MAX_FAILED_LOGINS
from keys.deployment import create_owned_deployment, key_owners
from keys.inventory import load_site_inventory
from keys.keystore import open_keystore, passphrase_from
from liaison.bundles.render import KEYS_BUNDLED, KEYS_ON_NODE, render
from liaison.cli import main
from liaison.lab.lab import Lab
from liaison.natsserver import BINARY_ENV, find_nats_server_binary, free_port
from tests.integration.labutil import INVENTORY, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "inventory.example.toml"
RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
LIAISON = [sys.executable, "-m", "liaison.cli"]
CLI_TIMEOUT_S = 60.0
# What a hostile sender puts in the fields it controls: retitle the window (OSC), clear the
# screen (CSI), ring, rewrite the line (CR), a C1 CSI, and a bidi override that reverses text.
HOSTILE = "ok\x1b]0;owned\x07\x1b[2J\r\x9b31m\u202eevil"
CONTROL = ("\x1b", "\x07", "\r", "\x9b", "\u202e")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI; output decoded by hand so a raw CR is seen (text mode would translate it)."""
    done = subprocess.run([*LIAISON, *args], capture_output=True, timeout=CLI_TIMEOUT_S, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def delivered(lab: Lab, office: str, message_id: str) -> None:
    with Client.from_lab(lab.root, office) as c:
        wait_for(lambda: any(d.message_id == message_id for d in c.subscribe(wait_s=1)), what="delivery")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("fail-closed-lab"), inventory=INVENTORY) as lab:
        yield lab


# --- the CLI: terminal control sequences -----------------------------------------------------


def test_sender_controlled_text_cannot_drive_the_operators_terminal(lab: Lab) -> None:
    """A sender puts escape sequences in the text and subject; inbox, case and audit show them inert.

    Failed before the fix: the first output checked, `liaison inbox`, carried the raw bytes
    (ESC ] 0 ; … BEL retitles the window, ESC [ 2 J clears the screen, CR rewrites the line,
    a C1 CSI, U+202E reverses the text); `case`, `status` and `audit` printed the same way.
    (The case id, once also hostile here, is now refused with control characters in it at
    the office and the gateway: tests/integration/test_poison.py.)
    """
    case_id = "CASE-TERMINAL"
    with Client.from_lab(lab.root, RU) as ru:
        sent = ru.send_case_message([TJ], case_id=case_id, text=HOSTILE, subject=HOSTILE)
    delivered(lab, TJ, sent.message_id)
    lab_dir = str(lab.root)
    query = ("audit", "query", "--lab", lab_dir, "--case", case_id)
    outputs = {
        "inbox": run("inbox", "--lab", lab_dir, "--office", TJ, "--all", "--wait", "2"),
        "case": run("case", "--lab", lab_dir, "--office", TJ, case_id),
        "audit query": run(*query),
    }
    [row] = [json.loads(line) for line in run(*query, "--json").stdout.splitlines()]
    outputs["audit show"] = run("audit", "show", "--lab", lab_dir, str(row["index"]))
    for what, done in outputs.items():
        assert done.returncode == 0, (what, done.stderr)
        assert not [c for c in CONTROL if c in done.stdout], (what, done.stdout)
    assert "evil" in outputs["inbox"].stdout
    assert "\\x1b]0;owned\\x07" in outputs["case"].stdout  # shown, visibly, not obeyed
    assert sent.message_id in outputs["audit query"].stdout
    assert case_id in outputs["audit show"].stdout


# --- the CLI: .part files ---------------------------------------------------------------------


def test_download_does_not_follow_a_symlink_planted_at_the_part_name(lab: Lab, tmp_path: Path) -> None:
    """Another local user plants ``out.bin.part -> victim``; the download must not write through it.

    Failed before the fix: `liaison download` exited 0 ("SHA-256 verified, written to …"); it
    opened ``out.bin.part`` with ``open("wb")``, which follows the link, so the attachment was
    written into the victim file and the link renamed to ``out.bin``.
    """
    source = tmp_path / "evidence.bin"
    source.write_bytes(os.urandom(4096))
    with Client.from_lab(lab.root, RU) as ru:
        ref = ru.upload_attachment(source)
        sent = ru.send_case_message([TJ], case_id="CASE-PART", text="file", attachments=[ref.id])
    delivered(lab, TJ, sent.message_id)
    victim = tmp_path / "victim"
    victim.write_text("the operator's shell profile\n")
    out = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").symlink_to(victim)
    done = run("download", "--lab", str(lab.root), "--office", TJ, sent.message_id, "--out", str(out))
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("error: "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "already exists" in done.stderr
    assert victim.read_text() == "the operator's shell profile\n"
    assert not out.exists()
    assert (tmp_path / "out.bin.part").is_symlink()  # not ours: left for the operator to inspect
    (tmp_path / "out.bin.part").unlink()
    done = run("download", "--lab", str(lab.root), "--office", TJ, sent.message_id, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == source.read_bytes()


# --- the office: whom it serves ----------------------------------------------------------------


def _office_config(lab: Lab, tmp_path: Path, *, clients: bool = True, nats_url: str = "") -> Path:
    """A copy of RU's office config on fresh ports and a fresh store (the real RU keeps running)."""
    lines = lab.nodes[RU].config.read_text().split("[metrics]")[0].splitlines()
    if not clients:
        assert any(line.startswith("clients =") for line in lines)
        lines = [line for line in lines if not line.startswith("clients =")]
    if nats_url:  # a plain server: no NATS TLS files, the given URL
        section = ""
        kept = []
        for line in lines:
            section = line if line.startswith("[") else section
            if section == "[nats]" and line.split(" ")[0] in ("url", "ca", "cert", "key"):
                continue
            kept.append(line)
            if line == "[nats]":
                kept.append(f'url = "{nats_url}"')
        lines = kept
    body = "\n".join(lines).replace(lab.nodes[RU].grpc, f"127.0.0.1:{free_port()}")
    body = body.replace('store = "office.db"', f'store = "{tmp_path / "office.db"}"')
    path = tmp_path / "office.toml"
    path.write_text(body + "\n")
    return path


def test_an_office_with_no_named_clients_refuses_to_start(lab: Lab, tmp_path: Path) -> None:
    """``[tls]`` without ``clients``: the office would serve every agency certificate of the deployment.

    Failed before the fix: the node started and served (any client certificate of the deployment
    CA, the other offices' agency systems included); now it exits 2 with one line naming the fix.
    """
    config = _office_config(lab, tmp_path, clients=False)
    proc = subprocess.Popen(
        [*LIAISON, "office", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=lab.nodes[RU].config.parent,
    )
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail("the office started without any named agency client certificate")
    assert proc.returncode == 2
    assert err.count("\n") == 1, err
    assert "[tls] clients" in err


# --- nats-server versions ----------------------------------------------------------------------

OLD_NATS_VERSION = "2.11.4"  # enforces no leaf-node permissions (fixed in 2.14.0 / 2.12.7)


def _old_nats_binary(tmp_path: Path) -> Path:
    """The real nats-server for everything but its version, which it reports as 2.11.4."""
    real = find_nats_server_binary()
    fake = tmp_path / "nats-server"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "nats-server: v{OLD_NATS_VERSION}"; exit 0; fi\n'
        f'exec "{real}" "$@"\n'
    )
    fake.chmod(0o755)
    return fake


def test_deploy_check_refuses_a_nats_server_that_ignores_leaf_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`liaison deploy check` on a hub bundle whose host has nats-server 2.11.4.

    Failed before the fix: the nats check ran only `nats-server -t`, which the old binary
    accepts: no FAIL line for nats at all, for a site whose leaf-node permissions are not enforced.
    """
    site = load_site_inventory(EXAMPLE)
    render(
        site,
        tmp_path / "out",
        keys=KEYS_ON_NODE,
        ca_passphrase=b"ca-pw",
        now_ms=int(time.time() * 1000),
    )
    monkeypatch.setenv(BINARY_ENV, str(_old_nats_binary(tmp_path)))
    code = main(["deploy", "check", str(tmp_path / "out" / "hub-1")])
    out = capsys.readouterr().out
    assert code == 1, out
    [line] = [ln for ln in out.splitlines() if ln.strip().startswith("FAIL") and " nats " in ln]
    assert f"version {OLD_NATS_VERSION}, which does not enforce leaf-node permissions" in line
    assert "2.14.0" in line


class _OldNatsServer:
    """Speaks just enough NATS to be connected to, announcing an old version in its INFO."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.port = free_port()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        info = {
            "server_id": "OLD",
            "version": self.version,
            "proto": 1,
            "headers": True,
            "max_payload": 1 << 20,
        }
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn, info), daemon=True).start()

    @staticmethod
    def _client(conn: socket.socket, info: dict[str, object]) -> None:
        with conn:
            conn.settimeout(30)
            conn.sendall(f"INFO {json.dumps(info)}\r\n".encode())
            with contextlib.suppress(OSError):
                for line in conn.makefile("rb"):
                    if line.startswith(b"PING"):
                        conn.sendall(b"PONG\r\n")

    def close(self) -> None:
        self._sock.close()


def test_a_node_refuses_to_start_on_a_nats_server_that_ignores_leaf_permissions(
    lab: Lab, tmp_path: Path
) -> None:
    """`liaison office serve` against a server whose INFO says 2.11.4.

    Failed before the fix: the node logged ``nats.connected`` and kept running (still up when the
    test's 60 s bound ran out); now it exits 2 at once with the version and the minimum.
    """
    old = _OldNatsServer(OLD_NATS_VERSION)
    try:
        config = _office_config(lab, tmp_path, nats_url=f"nats://127.0.0.1:{old.port}")
        done = subprocess.run(
            [*LIAISON, "office", "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=lab.nodes[RU].config.parent,
        )
    finally:
        old.close()
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.splitlines()[-1]  # before it: the node's own JSON log lines
    assert last.startswith("error: nats-server at 127.0.0.1:"), done.stderr[-2000:]
    assert f"version {OLD_NATS_VERSION}, which does not enforce leaf-node permissions" in last


# --- the web console ---------------------------------------------------------------------------

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)


def _restart_gateway_with_console(lab: Lab, console: str) -> None:
    """The lab's real gateway process, restarted with this ``[console]`` section."""
    lab.gateway.stop()
    config = lab.gateway.config
    config.write_text(config.read_text().split("\n[console]")[0] + "\n[console]\n" + console)
    lab.start_node("gateway")


def _shared_token_console(lab: Lab) -> tuple[str, str]:
    port, token = free_port(), secrets.token_urlsafe(32)
    (lab.gateway.config.parent / "console.token").write_text(token + "\n")
    _restart_gateway_with_console(lab, f'listen = "127.0.0.1:{port}"\ntoken_file = "console.token"\n')
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url), what="the console")
    return url, token


def _answers(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/login", timeout=2, context=context) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def test_a_flood_of_wrong_console_tokens_is_throttled(lab: Lab) -> None:
    """Eleven wrong tokens from one address: the eleventh and even the right token then get 429.

    Failed before the fix: every wrong token got its 401 at once, without end (the 11th too),
    and the right token still opened a session: guessing was limited only by the network.
    """
    url, token = _shared_token_console(lab)
    origin = {"Origin": url}
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:

        async def login(offered: str) -> tuple[int, dict[str, str]]:
            async with http.post(
                f"{url}/login", data={"token": offered}, headers=origin, allow_redirects=False
            ) as reply:
                return reply.status, dict(reply.headers)

        for _ in range(MAX_FAILED_LOGINS):
            assert (await login(secrets.token_urlsafe(32)))[0] == 401
        status, headers = await login(secrets.token_urlsafe(32))
        assert status == 429
        assert 0 < int(headers["Retry-After"]) <= FAILED_LOGIN_WINDOW_S + 1
        status, headers = await login(token)  # the right token: no different answer while throttled
        assert status == 429
        assert "Set-Cookie" not in headers
        async with http.get(f"{url}/api/records", headers={"Authorization": f"Bearer {token}"}) as reply:
            assert reply.status == 429


async def test_cross_origin_state_changing_requests_are_refused(lab: Lab) -> None:
    """A page on another origin makes the operator's browser POST /logout (and no Origin at all).

    Failed before the fix: the cross-origin POST /logout got 303 and closed the operator's
    session (only POST /login looked at Origin, and only when one was sent).
    """
    url, token = _shared_token_console(lab)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT, cookie_jar=jar) as http:
        async with http.post(
            f"{url}/login", data={"token": token}, headers={"Origin": url}, allow_redirects=False
        ) as reply:
            assert reply.status == 303
        for headers in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/x"}, {}):
            async with http.post(f"{url}/logout", headers=headers, allow_redirects=False) as reply:
                assert reply.status == 403, headers
        async with http.post(
            f"{url}/login", data={"token": token}, headers={"Origin": "null"}, allow_redirects=False
        ) as reply:
            assert reply.status == 403
        async with http.get(f"{url}/traffic", allow_redirects=False) as reply:
            assert reply.status == 200  # the session survived every refused request
        async with http.post(
            f"{url}/logout", headers={"Referer": f"{url}/traffic"}, allow_redirects=False
        ) as reply:
            assert reply.status == 303  # its own page may


def test_a_console_on_a_public_address_without_tls_refuses_to_start(lab: Lab, tmp_path: Path) -> None:
    """``[console] listen = "0.0.0.0:…"`` and no TLS: tokens and cookies would cross the network in clear.

    Failed before the fix: the gateway started and served the console over plain HTTP on
    every interface.
    """
    config = tmp_path / "gateway.toml"
    base = lab.gateway.config.read_text().split("\n[console]")[0].split("[metrics]")[0]
    base = base.replace('store = "audit.db"', f'store = "{tmp_path / "audit.db"}"')
    base = base.replace(lab.gateway.grpc, f"127.0.0.1:{free_port()}")
    config.write_text(f'{base}\n[console]\nlisten = "0.0.0.0:{free_port()}"\ntoken_file = "console.token"\n')
    (tmp_path / "console.token").write_text(secrets.token_urlsafe(32) + "\n")
    proc = subprocess.Popen(
        [*LIAISON, "gateway", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail("the gateway served the console on 0.0.0.0 without TLS")
    assert proc.returncode == 2
    assert err.count("\n") == 1, err
    assert "is not a loopback address and the console has no TLS" in err


async def test_each_operator_logs_in_by_name_over_tls(lab: Lab, tmp_path: Path) -> None:
    """Two operators, each with their own token, on a public address with TLS.

    Failed before the fix: the console had one shared token, so its login log could not name
    who logged in, and it could not serve TLS at all.
    """
    tokens = {"alice": secrets.token_urlsafe(32), "bob": secrets.token_urlsafe(32)}
    operators = lab.gateway.config.parent / "console.operators"
    operators.write_text(
        "# operator  sha256(token)\n"
        + "".join(f"{name} {hashlib.sha256(t.encode()).hexdigest()}\n" for name, t in tokens.items())
    )
    assert lab.deployment is not None
    tls = lab.pki.files(lab.deployment.inventory.gateway.id)
    port = free_port()
    _restart_gateway_with_console(
        lab,
        f'listen = "0.0.0.0:{port}"\noperators_file = "console.operators"\n'
        f'tls_cert = "{tls.cert}"\ntls_key = "{tls.key}"\n',
    )
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(tls.ca))
    wait_for(lambda: _answers(url, context), what="the console over TLS")
    assert not _answers(f"http://127.0.0.1:{port}")  # no plain HTTP beside it
    jar = aiohttp.CookieJar(unsafe=True)
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT, cookie_jar=jar, connector=connector) as http:
        async with http.post(
            f"{url}/login", data={"token": tokens["bob"]}, headers={"Origin": url}, allow_redirects=False
        ) as reply:
            assert reply.status == 303
            assert "Secure" in reply.headers["Set-Cookie"]
        async with http.get(
            f"{url}/api/heads", headers={"Authorization": f"Bearer {tokens['alice']}"}
        ) as reply:
            assert reply.status == 200
    logins = [
        json.loads(line) for line in lab.gateway.log.read_text().splitlines() if '"console_login"' in line
    ]
    assert [entry["operator"] for entry in logins][-1:] == ["bob"]
    assert not any(t in lab.gateway.log.read_text() for t in tokens.values())


# --- the deployment CA key ---------------------------------------------------------------------


def test_render_keeps_the_ca_key_encrypted_and_apart_from_the_keystores(tmp_path: Path) -> None:
    """`liaison deploy render` in bundled mode: the CA key is encrypted under its own passphrase.

    Failed before the fix (by construction: render called ``create_ca`` without a passphrase):
    ``_private/pki/ca.key`` was a clear key, and the one keystore passphrase was all an
    attacker with the rendered folder needed for everything else.
    """
    site = load_site_inventory(EXAMPLE)
    now = int(time.time() * 1000)
    render(site, tmp_path / "out", keys=KEYS_BUNDLED, ca_passphrase=b"ca", now_ms=now)
    pem = (tmp_path / "out" / "_private" / "pki" / "ca.key").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    for owner_passphrase in (tmp_path / "out" / "_private").glob("*.passphrase"):
        with pytest.raises(WrongPassphraseError):
            primitives.load_tls_key_pem(pem, passphrase_from(owner_passphrase))
    primitives.load_tls_key_pem(pem, b"ca")
    assert not list((tmp_path / "out").glob("[!_]*/**/ca.key"))  # the CA key is in no node's bundle


# --- bundled keystores: one passphrase per owner -----------------------------------------------


def _keystores(out: Path) -> dict[str, Path]:
    """Every keystore a bundled render wrote, by owner: the authorities' and each node's."""
    found = {
        p.parent.name: p.parent for p in (out / "_private" / "deployment" / "keys").glob("*/keystore.json")
    }
    for manifest in out.glob("[!_]*/bundle.json"):
        b = json.loads(manifest.read_text())
        if (manifest.parent / "keys" / "keystore.json").exists():
            found.setdefault(b["keys"]["owner"], manifest.parent / "keys")
    return found


def test_no_single_passphrase_opens_two_owners_keystores(tmp_path: Path) -> None:
    """Holding one authority's passphrase opens no other authority's keystore and no node's.

    Failed before the fix: render encrypted every keystore of a bundled deployment (both
    authorities' m-of-n signing keys, the gateway, every office) under the one
    ``--passphrase-file``; with the passphrase of ``ru-embassy-dushanbe`` the attack opened all
    5 other keystores (``tj-embassy-moscow``, the gateway, the three offices), so one holder
    could sign a directory alone and the threshold of 2 meant nothing. Now each owner's
    keystore has its own generated passphrase in ``_private/<owner>.passphrase``.
    """
    site = load_site_inventory(EXAMPLE)
    out = tmp_path / "out"
    render(site, out, keys=KEYS_BUNDLED, ca_passphrase=b"ca", now_ms=int(time.time() * 1000))
    keystores = _keystores(out)
    authorities = [a.id for a in site.inventory.authorities]
    assert set(authorities) <= set(keystores)
    assert {site.gateway.id, *(o.id for o in site.offices)} <= set(keystores)
    for owner, keys_dir in keystores.items():  # each owner's own passphrase does open its own
        assert (
            open_keystore(keys_dir, passphrase_from(out / "_private" / f"{owner}.passphrase")).owner_id
            == owner
        )
    for holder in authorities:
        stolen = passphrase_from(out / "_private" / f"{holder}.passphrase")
        opened = []
        for owner, keys_dir in keystores.items():
            if owner == holder:
                continue
            with contextlib.suppress(WrongPassphraseError):
                open_keystore(keys_dir, stolen)
                opened.append(owner)
        assert opened == [], f"{holder}'s passphrase opens {opened}"
    for manifest in out.glob("[!_]*/bundle.json"):  # a bundle carries its own passphrase, no other
        bundle = manifest.parent
        own = json.loads(manifest.read_text())["keys"].get("owner")
        carried = sorted(p.name for p in bundle.rglob("*passphrase*"))
        if own is None:
            assert carried == [], bundle.name
            continue
        assert carried == ["passphrase"], bundle.name
        assert (bundle / "passphrase").stat().st_mode & 0o777 == 0o600
        assert (bundle / "passphrase").read_bytes() == (out / "_private" / f"{own}.passphrase").read_bytes()
    owned = sorted(p.read_bytes() for p in (out / "_private").glob("*.passphrase"))
    assert len(owned) == len(keystores) == len(set(owned))


def test_create_owned_deployment_refuses_a_shared_passphrase(tmp_path: Path) -> None:
    """Two owners with one passphrase is refused before any key is made."""
    inv = load_site_inventory(EXAMPLE).inventory
    shared = dict.fromkeys(key_owners(inv), b"")
    for i, owner in enumerate(shared):
        shared[owner] = f"pw-{i}".encode()
    first, second = inv.authorities[0].id, inv.authorities[1].id
    shared[second] = shared[first]
    with pytest.raises(ConfigError, match=f"{first} and {second} would share one passphrase"):
        create_owned_deployment(inv, tmp_path / "d", shared, int(time.time() * 1000))
    assert not (tmp_path / "d").exists()


def test_render_refuses_one_passphrase_for_every_keystore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old `deploy render --passphrase-file F` (one passphrase for all) is a one-line refusal."""
    (tmp_path / "pw").write_bytes(b"one for all\n")
    argv = ["deploy", "render", "--inventory", str(EXAMPLE), "--out", str(tmp_path / "out")]
    assert main([*argv, "--keys", "bundled", "--passphrase-file", str(tmp_path / "pw")]) == 2
    err = capsys.readouterr().err
    assert "takes no --passphrase-file" in err
    assert "one for all" not in err
    assert not (tmp_path / "out").exists()
