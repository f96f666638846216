"""Fail closed (issue 11, section 7): attacks through the real lab, CLI and node processes.

One lab per module. Each test is an attack by a party holding valid
credentials of its own (an office, an agency system, a local user of the
operator's machine) and says in its docstring what it did before the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.client.sdk import Client
from liaison.lab.lab import Lab
from liaison.natsserver import free_port
from tests.integration.labutil import INVENTORY, wait_for

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
    """A sender puts escape sequences in the case id and text; inbox, case and audit show them inert.

    Failed before the fix: the first output checked, `liaison inbox`, carried the raw bytes
    (ESC ] 0 ; … BEL retitles the window, ESC [ 2 J clears the screen, CR rewrites the line,
    a C1 CSI, U+202E reverses the text); `case`, `status` and `audit` printed the same way.
    """
    case_id = f"CASE-{HOSTILE}"
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
    assert "\\u202e" in outputs["audit show"].stdout  # the case id, as the gateway logged it


# --- the CLI: .part files ---------------------------------------------------------------------


def test_download_does_not_follow_a_symlink_planted_at_the_part_name(lab: Lab, tmp_path: Path) -> None:
    """Another local user plants ``out.bin.part -> victim``; the download must not write through it.

    Failed before the fix: `liaison download` opened ``out.bin.part`` with ``open("wb")``, which
    followed the link: it exited 0, the attachment overwrote the victim file, and ``out.bin``
    was left as a symlink to it.
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


def _office_config_without_clients(lab: Lab, tmp_path: Path) -> Path:
    config = lab.nodes[RU].config
    text = config.read_text()
    kept = [line for line in text.splitlines() if not line.startswith("clients =")]
    assert len(kept) < len(text.splitlines())
    listen = f"127.0.0.1:{free_port()}"
    body = "\n".join(kept).replace(lab.nodes[RU].grpc, listen)
    body = body.replace('store = "office.db"', f'store = "{tmp_path / "office.db"}"')
    body = body.split("[metrics]")[0]  # the running office holds its metrics port
    path = tmp_path / "office.toml"
    path.write_text(body + "\n")
    return path


def test_an_office_with_no_named_clients_refuses_to_start(lab: Lab, tmp_path: Path) -> None:
    """``[tls]`` without ``clients``: the office would serve every agency certificate of the deployment.

    Failed before the fix: the node started and served (any client certificate of the deployment
    CA, the other offices' agency systems included); now it exits 2 with one line naming the fix.
    """
    config = _office_config_without_clients(lab, tmp_path)
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
