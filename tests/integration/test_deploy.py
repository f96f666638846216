"""`liaison deploy render` / `check`, and a rendered deployment run as real processes.

Part 1 renders ``deploy/inventory.example.toml`` as it is (production hosts,
keys created on the nodes) and checks what can be checked away from those
hosts. Part 2 renders the same inventory moved onto this machine (127.0.0.1,
free ports, tmp install paths, bundled keystores): every bundle checks clean,
and a table of broken bundles each fails exactly the check it should, with a
precise message. Part 3 runs that rendered deployment: the three-server hub
cluster and one leaf node server per office from their rendered
nats-server configs, the gateway, two offices and the witness from their
rendered node configs; an agency client (certificate from the bundle) sends
a case message from one office to the other through the leaf nodes, the
hub and the gateway, and it is delivered; the witness co-signs.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exchange.client.sdk import ClientTls
from exchange.core.errors import TransportError
from exchange.nats.transport import connect
from gateway.client import AuditClient, AuditFilter
from keys import pki
from keys.inventory import load_site_inventory
from liaison.bundles.check import Result, check_bundle
from liaison.bundles.render import KEYS_ON_NODE, render
from liaison.cli import main
from tests.integration.deployutil import (
    PASSPHRASE,
    START_S,
    Procs,
    Running,
    client,
    http_json,
    local_inventory,
    render_local,
    start_deployment,
    wait_for,
)

CA_PW = b"test-ca-passphrase"  # the deployment CA key is always encrypted


def NOW_MS() -> int:
    return int(time.time() * 1000)


EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "inventory.example.toml"

RU, TJ = "ru-mvd-dushanbe", "tj-mvd-moscow"
DELIVERY_S = 90.0


def failed(results: list[Result]) -> dict[str, str]:
    return {r.check: r.detail for r in results if r.failed}


# --- part 1: the example inventory as it is ----------------------------------------------------


def test_example_inventory_renders_bundles_without_identity_keys(tmp_path: Path) -> None:
    site = load_site_inventory(EXAMPLE)
    bundles = render(
        site,
        tmp_path / "out",
        keys=KEYS_ON_NODE,
        ca_passphrase=CA_PW,
        now_ms=int(time.time() * 1000),
    )
    roles = sorted((b.role, b.node) for b in bundles)
    assert [r for r, _ in roles] == ["gateway", "hub", "hub", "hub", "office", "office", "office", "witness"]
    out = tmp_path / "out"
    # No identity key leaves its node: no keystore anywhere in a bundle, the ceremony says how.
    assert not list(out.glob("[!_]*/keys/keystore.json"))
    assert "liaison directory sign" in (out / "_private" / "CEREMONY.txt").read_text()
    assert "liaison keys init --office ru-mvd-dushanbe" in (out / RU / "README.txt").read_text()
    hub = (out / "hub-1" / "nats-server.conf").read_text()
    assert "cluster {" in hub
    assert "nats-route://nats-2." in hub
    assert "leafnodes {" in hub
    assert 'domain: "hub"' in hub
    assert "verify_and_map: true" in hub
    # The streams in their own account, each office leaf link in its own (ADR 0011).
    assert '"LIAISON": {' in hub
    assert f'"{RU}": {{' in hub
    assert "authorization {\n  users" not in hub  # no users outside the accounts
    # One agency certificate per listed agency system, each named in the office's clients.
    mig = out / "tj-migration-moscow"
    assert sorted(p.name for p in (mig / "agency").glob("*.crt")) == [
        "ca.crt", "consular-desk.crt", "migration-register.crt",
    ]  # fmt: skip
    assert (
        'clients = ["tj-migration-moscow-migration-register", "tj-migration-moscow-consular-desk"]'
        in (mig / "office.toml").read_text()
    )
    assert 'clients = ["ru-mvd-dushanbe-agency"]' in (out / RU / "office.toml").read_text()
    leaf = (out / RU / "nats-server.conf").read_text()
    assert "remotes: [" in leaf
    assert "nats-leaf://nats-3." in leaf
    assert f'domain: "{RU}"' in leaf
    for b in bundles:
        _, results = check_bundle(out / b.node, None)
        statuses = {r.check: r.status for r in results}
        assert statuses.get("nats", "skip") in ("ok", "skip"), failed(results)  # nats-server -t accepts it
        if b.role != "hub":
            assert statuses["keys"] == "skip"
            assert statuses["directory"] == "skip"
        assert "certificate" not in failed(results)
        assert "config" not in failed(results)


def _commands(text: str, prefix: str = "liaison ") -> list[list[str]]:
    return [shlex.split(ln.strip())[1:] for ln in text.splitlines() if ln.strip().startswith(prefix)]


def test_on_node_keys_ceremony_as_written_yields_checked_bundles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Follow README step 4 on every node and CEREMONY.txt for the authorities, commands as printed."""
    site = load_site_inventory(local_inventory(tmp_path))
    out = tmp_path / "bundles"
    bundles = render(site, out, keys=KEYS_ON_NODE, ca_passphrase=CA_PW, now_ms=int(time.time() * 1000))
    monkeypatch.chdir(tmp_path)
    passfile = tmp_path / "passphrase"  # the authorities' PASSFILE (each its own on a real site)
    passfile.write_bytes(PASSPHRASE + b"\n")
    (tmp_path / "credentials").mkdir()
    (tmp_path / "public").mkdir()
    ceremony = _commands((out / "_private" / "CEREMONY.txt").read_text().replace("PASSFILE", str(passfile)))
    authorities = [c for c in ceremony if c[:2] in (["keys", "init"], ["keys", "export-public"])]
    for cmd in authorities:
        assert main(cmd) == 0, cmd
    for b in bundles:
        if b.role in ("office", "gateway"):
            (tmp_path / "credentials" / f"{b.node}.passphrase").write_bytes(PASSPHRASE + b"\n")
            for cmd in _commands((out / b.node / "README.txt").read_text(), "liaison keys "):
                assert main(cmd) == 0, cmd
            shutil.move(f"{b.node}.public.json", tmp_path / "public" / f"{b.node}.json")
    for cmd in ceremony:
        if cmd not in authorities:
            assert main(cmd) == 0, cmd
    witness = out / "tj-embassy-moscow-witness"
    shutil.copytree(tmp_path / "keys" / "tj-embassy-moscow", witness / "keys")
    for b in bundles:
        if b.role != "hub":
            shutil.copy(tmp_path / "directory.pb", out / b.node / "directory.pb")
    capsys.readouterr()
    for b in bundles:
        _, results = check_bundle(out / b.node, PASSPHRASE)
        statuses = {r.check: r.status for r in results}
        assert failed(results) == {}, [r.line() for r in results]
        if b.role != "hub":
            assert statuses["keys"] == "ok"
            assert statuses["directory"] == "ok"


# --- part 2: on this machine -------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered once for the check tests; never run (the run has its own ports, see ``running``)."""
    return render_local(tmp_path_factory.mktemp("deploy"))


def test_every_rendered_bundle_checks_clean(deployment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["deploy", "check", str(deployment / "bundles")]
    )  # each bundle's keystore opens with the bundle's own passphrase file
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("=> OK") == 8
    assert "verdict: OK" in out
    assert "nats-server -t accepts" in out
    assert ("verified by systemd-analyze" in out) or ("parses, hardened" in out)


def _other_ca_cert(tmp: Path) -> Callable[[Path], None]:
    def breaker(b: Path) -> None:
        other = tmp / "other-ca"
        pki.create_ca(other, "someone-else", passphrase=CA_PW)
        issued = pki.issue(other, "node", RU, ca_passphrase=CA_PW)
        shutil.copy(issued.cert, b / "tls" / "node.crt")
        shutil.copy(issued.key, b / "tls" / "node.key")

    return breaker


def _append(rel: str, text: str) -> Callable[[Path], None]:
    def breaker(b: Path) -> None:
        with (b / rel).open("a") as f:
            f.write(text)

    return breaker


def _drop_line(rel: str, prefix: str) -> Callable[[Path], None]:
    def breaker(b: Path) -> None:
        p = b / rel
        p.write_text("".join(ln for ln in p.read_text().splitlines(True) if not ln.startswith(prefix)))

    return breaker


BROKEN: list[tuple[str, Callable[[Path], None] | str, str, str]] = [
    ("missing-cert", lambda b: (b / "tls" / "node.crt").unlink(), "certificate", "node: cannot read"),
    ("cert-from-another-ca", "other-ca", "certificate", "was not issued by this CA"),
    (
        "key-of-another-cert",
        lambda b: shutil.copy(b / "tls/nats.key", b / "tls/node.key"),
        "certificate",
        "tls/node.key is not the key of tls/node.crt",
    ),
    ("wrong-passphrase", "wrong-passphrase", "keys", "passphrase"),
    (
        "another-owners-passphrase",
        "another-owners-passphrase",
        "keys",
        "passphrase",
    ),
    (
        "readable-passphrase",
        lambda b: (b / "passphrase").chmod(0o644),
        "keys",
        "passphrase (the keystore passphrase) must be mode 0600",
    ),
    (
        "no-passphrase",
        "no-passphrase",
        "keys",
        "no passphrase: give --passphrase-file or set LIAISON_PASSPHRASE",
    ),
    ("malformed-toml", _append("office.toml", "\n[office\nid = \n"), "config", "not valid TOML"),
    (
        "config-for-another-office",
        lambda b: (b / "office.toml").write_text(
            (b / "office.toml").read_text().replace(f'id = "{RU}"', f'id = "{TJ}"')
        ),
        "config",
        f"office.toml is for {TJ}, the bundle for {RU}",
    ),
    ("port-in-use", "port-in-use", "port", "cannot be bound: Address already in use"),
    (
        "bad-nats-config",
        _append("nats-server.conf", "\nleafnodes { remotes: [ { urls: 42 } ] }\n"),
        "nats",
        "nats-server -t refuses nats-server.conf",
    ),
    (
        "unhardened-unit",
        _drop_line("systemd/liaison-office@.service", "ProtectSystem="),
        "unit",
        "hardening option ProtectSystem=strict missing",
    ),
    (
        "broken-unit",
        _append("systemd/liaison-office@.service", "\nthis is not a unit line\n"),
        "unit",
        "line",
    ),
]


@pytest.mark.parametrize(("breaker", "check", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_bundle_fails_one_check_precisely(
    deployment: Path, tmp_path: Path, breaker: Callable[[Path], None] | str, check: str, message: str
) -> None:
    bundle = tmp_path / RU
    shutil.copytree(deployment / "bundles" / RU, bundle)
    own = (bundle / "passphrase").read_text().strip()
    passphrase: bytes | None = None  # the bundle's own passphrase file
    with contextlib.ExitStack() as stack:
        if breaker == "other-ca":
            _other_ca_cert(tmp_path)(bundle)
        elif breaker == "wrong-passphrase":
            passphrase = b"not the passphrase"
        elif breaker == "another-owners-passphrase":  # the gateway's opens the gateway's keystore only
            passphrase = (deployment / "bundles" / "embassy-gateway" / "passphrase").read_bytes().strip()
        elif breaker == "no-passphrase":
            (bundle / "passphrase").unlink()
        elif breaker == "port-in-use":
            manifest = json.loads((bundle / "bundle.json").read_text())
            host, _, port = manifest["listen"][0]["address"].rpartition(":")
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, int(port)))
            sock.listen()
        else:
            assert callable(breaker)
            breaker(bundle)
        _, results = check_bundle(bundle, passphrase)
    bad = failed(results)
    assert list(bad) == [check], [r.line() for r in results]
    assert message in bad[check]
    assert own not in bad[check]


def test_check_cli_exit_code_and_verdict(
    deployment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "gw"
    shutil.copytree(deployment / "bundles" / "embassy-gateway", bundle)
    (bundle / "tls" / "node.crt").unlink()
    code = main(["deploy", "check", str(bundle)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  certificate  node: cannot read" in out
    assert "verdict: FAILED" in out


# --- part 3: run the rendered deployment -------------------------------------------------------


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = render_local(tmp_path_factory.mktemp("deploy-run"))
    procs = Procs(root / "logs")
    try:
        yield start_deployment(root, procs)
    finally:
        procs.stop()


@pytest.mark.slow
def test_rendered_deployment_delivers_between_offices_through_leaf_nodes(running: Running) -> None:
    bundles, manifests = running.bundles, running.manifests
    sender, recipient = client(running, RU), client(running, TJ)
    try:
        start = time.monotonic()
        sent = sender.send_case_message([TJ], case_id="DEPLOY-1", text="through the leaf nodes")
        got = None
        deadline = time.monotonic() + DELIVERY_S
        while got is None and time.monotonic() < deadline:
            for d in recipient.subscribe(wait_s=2.0):
                if d.message_id == sent.message_id:
                    got = d
                    break
        assert got is not None, "not delivered:\n" + "\n".join(n.log_tail() for n in running.procs.nodes)
        running.figures["first_delivery_s"] = time.monotonic() - start
        assert got.body.text == "through the leaf nodes"  # type: ignore[union-attr]
        assert got.sender == RU
        recipient.ack(sent.message_id)
        # A second message, once everything is warm.
        start = time.monotonic()
        again = sender.send_case_message([TJ], case_id="DEPLOY-1", text="second")
        seen = False
        for d in recipient.subscribe(wait_s=DELIVERY_S):
            if d.message_id == again.message_id:
                seen = True
                break
        assert seen
        running.figures["warm_delivery_s"] = time.monotonic() - start
        # It went through the audit point: the gateway's log holds the message.
        op = bundles / "_private" / "operator"
        gw = manifests["embassy-gateway"]["listen"][0]["address"]
        with AuditClient(gw, tls=ClientTls(op / "ca.crt", op / "operator.crt", op / "operator.key")) as audit:
            records, _ = audit.query(AuditFilter(message_id=sent.message_id), oldest_first=True)
        assert records, "the gateway did not audit the message"
        monitor = manifests["hub-1"]["listen"][3]["address"]
        jsz = http_json(f"http://{monitor}/jsz?accounts=true&streams=true&config=true")
        streams = [s for a in jsz.get("account_details", []) for s in a.get("stream_detail", [])]
        replicas = {s["name"]: s["config"].get("num_replicas", 1) for s in streams}
        assert replicas, "no streams reported by the hub"
        assert set(replicas.values()) == {3}, f"hub streams are not R3: {replicas}"
        running.figures["stream_replicas"] = 3
    finally:
        sender.close()
        recipient.close()
    print("deploy figures:", json.dumps({k: round(v, 2) for k, v in running.figures.items()}))


@pytest.mark.slow
def test_rendered_witness_cosigns_the_rendered_gateway(running: Running) -> None:
    state = Path(running.manifests["tj-embassy-moscow-witness"]["state_dir"]) / "witness.json"

    def cosigned() -> bool:
        try:
            return json.loads(state.read_text()).get("last") is not None
        except (OSError, ValueError):
            return False

    witness = running.procs.nodes[-1]
    wait_for("the witness's first co-signature", cosigned, START_S, witness.log_tail)
    assert witness.running


@pytest.mark.slow
async def test_hub_admits_no_office_node_directly(running: Running) -> None:
    """Offices reach the hub only through their leaf link: an office node certificate is no hub user."""
    bundles, manifests = running.bundles, running.manifests
    t = bundles / RU / "tls"
    ctx = ssl.create_default_context(cafile=str(t / "ca.crt"))
    ctx.load_cert_chain(str(t / "node.crt"), str(t / "node.key"))
    with pytest.raises(TransportError):
        await connect(
            f"tls://{manifests['hub-1']['listen'][0]['address']}", "intruder", tls=ctx, connect_timeout=2.0
        )
