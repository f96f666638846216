"""The gateway's read-only web console, end to end through a real lab.

One lab per module: its gateway is restarted with a ``[console]`` section,
so the console runs inside the real ``liaison gateway serve`` process, over
the real audit store. HTTP-level tests use aiohttp's client; the browser
test drives Debian's headless Chromium with Selenium (skipped only when
Chromium is not installed) and checks that the page itself verifies the
inclusion proof.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from exchange.client.sdk import Client
from exchange.core.errors import ConfigError
from exchange.core.model import AlertCategory, Priority, Suite
from exchange.runtime.lifecycle import load_directory
from gateway.audit.merkle import verify_inclusion
from gateway.audit.sqlite import SQLiteAuditStore
from gateway.audit.treehead import sign_cosignature
from gateway.client import AuditClient
from gateway.config import ConsoleConfig, load_gateway_config
from gateway.console import load_token, start_console
from gateway.metrics import GatewayMetrics
from gateway.node import GatewayNode
from liaison.lab.lab import Lab
from liaison.natsserver import free_port
from tests.integration.labutil import INVENTORY, identity, wait_for

RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"
WITNESS = "tj-embassy-moscow"
SECRET_TEXT = "BODY-TEXT-THE-GATEWAY-NEVER-SEES"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass
class ConsoleLab:
    lab: Lab
    url: str
    token: str
    accepted_id: str  # RU -> TJ case message
    alert_id: str  # RU -> TJ, MIG alert
    rejected_id: str  # MIG -> RU alert, refused by policy
    started_ms: int
    cosigned_size: int  # a head the witness WITNESS co-signed


def _console_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/login", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleLab]:
    lab = Lab(tmp_path_factory.mktemp("console-lab"), inventory=INVENTORY)
    with lab:
        lab.gateway.stop()
        port = free_port()
        token = secrets.token_urlsafe(32)
        token_file = lab.gateway.config.parent / "console.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        with lab.gateway.config.open("a") as f:
            f.write(f'\n[console]\nlisten = "127.0.0.1:{port}"\ntoken_file = "console.token"\n')
        lab.start_node("gateway")
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _console_up(url), what="the console to answer")
        started_ms = int(time.time() * 1000) - 1000
        with Client.from_lab(lab.root, RU) as ru, Client.from_lab(lab.root, MIG) as mig:
            accepted = ru.send_case_message([TJ], case_id="CASE-CONSOLE", text=SECRET_TEXT)
            alert = ru.send_alert(
                [TJ, MIG],
                category=AlertCategory.OTHER,
                priority=Priority.FLASH,
                subject="s",
                text=SECRET_TEXT,
            )
            rejected = mig.send_alert(
                [RU], category=AlertCategory.OTHER, priority=Priority.ROUTINE, subject="x", text=SECRET_TEXT
            )
            wait_for(lambda: mig.status(rejected.message_id).rejected, what="the policy rejection")
        with AuditClient.from_lab(lab.root) as audit:
            head = audit.tree_head()
            key = identity(lab, WITNESS).signing_keys(Suite.CLASSIC)[0]
            audit.add_cosignature(head.tree_head.size, sign_cosignature(head, WITNESS, key))
        yield ConsoleLab(
            lab, url, token, accepted.message_id, alert.message_id, rejected.message_id, started_ms,
            head.tree_head.size,
        )  # fmt: skip


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _get(c: ConsoleLab, path: str, **kw: Any) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http,
        http.get(c.url + path, allow_redirects=False, **kw) as reply,
    ):
        return reply.status, dict(reply.headers), await reply.text()


async def _json(c: ConsoleLab, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=HTTP_TIMEOUT, headers=_bearer(c.token)) as http,
        http.get(c.url + path) as reply,
    ):
        assert reply.status == 200, await reply.text()
        body: dict[str, Any] = await reply.json()
        return body


async def _records(c: ConsoleLab, query: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = (await _json(c, f"/api/records?{query}"))["records"]
    return records


# --- authentication ------------------------------------------------------------------------

PROTECTED_HTML = ["/", "/traffic", "/rejections", "/records/0", "/heads", "/chart", "/static/console.js"]
PROTECTED_API = ["/api/records", "/api/records/0", "/api/heads", "/api/heads/1", "/api/stats"]


@pytest.mark.parametrize("path", PROTECTED_HTML)
async def test_pages_redirect_to_login_without_credentials(console: ConsoleLab, path: str) -> None:
    status, headers, _ = await _get(console, path)
    assert (status, headers["Location"]) == (302, "/login")


@pytest.mark.parametrize("path", PROTECTED_API)
async def test_api_refuses_without_credentials(console: ConsoleLab, path: str) -> None:
    status, headers, body = await _get(console, path)
    assert status == 401
    assert headers["WWW-Authenticate"] == "Bearer"
    assert "records" not in body
    assert "heads" not in body


WRONG_CREDENTIALS = {
    "wrong-token": {"Authorization": "Bearer " + "x" * 43},
    "token-with-suffix": None,  # filled in with the real token + "x"
    "token-prefix": None,  # the real token minus its last character
    "empty-bearer": {"Authorization": "Bearer "},
    "basic-scheme": None,  # the real token under another scheme
    "forged-session-cookie": {"Cookie": "liaison_console=" + "A" * 43},
}


@pytest.mark.parametrize("case", list(WRONG_CREDENTIALS))
async def test_wrong_credentials_are_refused(console: ConsoleLab, case: str) -> None:
    headers = (
        WRONG_CREDENTIALS[case]
        or {
            "token-with-suffix": {"Authorization": f"Bearer {console.token}x"},
            "token-prefix": {"Authorization": f"Bearer {console.token[:-1]}"},
            "basic-scheme": {"Authorization": f"Basic {console.token}"},
        }[case]
    )
    status, _, _ = await _get(console, "/api/records", headers=headers)
    assert status == 401
    status, _, _ = await _get(console, "/traffic", headers=headers)
    assert status in (302, 401)


async def test_login_with_wrong_token_sets_no_cookie(console: ConsoleLab) -> None:
    async with (
        aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http,
        http.post(
            f"{console.url}/login", data={"token": "not-the-token"}, headers={"Origin": console.url}
        ) as reply,
    ):
        assert reply.status == 401
        assert "Set-Cookie" not in reply.headers
        assert "That token is not valid." in await reply.text()


async def test_login_opens_a_strict_httponly_session_and_logout_closes_it(console: ConsoleLab) -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
    same_origin = {"Origin": console.url}
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT, cookie_jar=jar) as http:
        async with http.post(  # a browser sends its page's Origin with every POST
            f"{console.url}/login", data={"token": console.token}, headers=same_origin, allow_redirects=False
        ) as reply:
            assert (reply.status, reply.headers["Location"]) == (303, "/traffic")
            cookie = reply.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/" in cookie
        async with http.get(f"{console.url}/traffic", allow_redirects=False) as reply:
            assert reply.status == 200
            assert console.accepted_id in await reply.text()
        async with http.post(f"{console.url}/logout", headers=same_origin, allow_redirects=False) as reply:
            assert reply.status == 303
        async with http.get(f"{console.url}/traffic", allow_redirects=False) as reply:
            assert reply.status == 302


async def test_cross_origin_login_is_refused(console: ConsoleLab) -> None:
    async with (
        aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http,
        http.post(
            f"{console.url}/login", data={"token": console.token}, headers={"Origin": "http://evil.example"}
        ) as reply,
    ):
        assert reply.status == 403
        assert "Set-Cookie" not in reply.headers


@pytest.mark.parametrize("path", ["/login", "/api/records", "/traffic", "/api/records/999999"])
async def test_security_headers_on_every_response(console: ConsoleLab, path: str) -> None:
    _, headers, _ = await _get(console, path, headers=_bearer(console.token))
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"


# --- data ------------------------------------------------------------------------------------


async def test_records_endpoint_returns_the_traffic(console: ConsoleLab) -> None:
    [accepted] = await _records(console, f"message_id={console.accepted_id}&verdict=accepted")
    assert accepted["sender"] == RU
    assert accepted["recipients"] == [TJ]
    assert (accepted["kind"], accepted["case_id"]) == ("case-message", "CASE-CONSOLE")
    [rejected] = await _records(console, f"message_id={console.rejected_id}")
    assert (rejected["verdict"], rejected["reason"], rejected["sender"]) == (
        "rejected",
        "policy-denied",
        MIG,
    )


FILTERS: dict[str, tuple[str, Callable[[ConsoleLab], set[str]], str, str]] = {
    "verdict-rejected": ("verdict=rejected", lambda c: {c.rejected_id}, "verdict", "rejected"),
    "reason": ("reason=policy-denied", lambda c: {c.rejected_id}, "reason", "policy-denied"),
    "sender": (f"sender={MIG}&kind=alert", lambda c: {c.rejected_id}, "sender", MIG),
    "recipient": (f"recipient={MIG}&verdict=accepted", lambda c: {c.alert_id}, "verdict", "accepted"),
    "kind": ("kind=case-message&verdict=accepted", lambda c: {c.accepted_id}, "kind", "case-message"),
    "case": ("case_id=CASE-CONSOLE&verdict=accepted", lambda c: {c.accepted_id}, "case_id", "CASE-CONSOLE"),
    "priority": ("priority=flash&verdict=accepted", lambda c: {c.alert_id}, "priority", "flash"),
}


@pytest.mark.parametrize("case", list(FILTERS))
async def test_filters_select_matching_records(console: ConsoleLab, case: str) -> None:
    query, expected, field, value = FILTERS[case]
    records = await _records(console, query)
    assert {r["message_id"] for r in records} == expected(console)
    assert all(r[field] == value for r in records)


async def test_time_range_filter(console: ConsoleLab) -> None:
    now_ms = int(time.time() * 1000)
    inside = await _records(console, f"since={console.started_ms}&until={now_ms + 60_000}&limit=500")
    assert {console.accepted_id, console.rejected_id} <= {r["message_id"] for r in inside}
    assert await _records(console, f"since={now_ms + 60_000}") == []
    assert await _records(console, "until=2000-01-01T00:00:00") == []


async def test_pagination_walks_every_record_once(console: ConsoleLab) -> None:
    seen: list[int] = []
    token = ""
    for _ in range(100):
        body = await _json(console, f"/api/records?limit=2{'&page=' + token if token else ''}")
        seen += [int(r["index"]) for r in body["records"]]
        if body["next_page"] is None:
            break
        token = str(body["next_page"])
    assert seen == sorted(seen, reverse=True)
    assert seen == list(range(len(seen) - 1, -1, -1))


BAD_PARAMS = {
    "unknown-verdict": "verdict=maybe",
    "unknown-kind": "kind=letter",
    "unknown-reason": "reason=because",
    "bad-time": "since=yesterday",
    "empty-range": "since=2000&until=1000",
    "zero-limit": "limit=0",
    "huge-limit": "limit=100000",
    "space-in-id": "message_id=a%20b",
    "bad-page-token": "page=zzz",
    "unicode-digit-time": "since=%C2%B2",
    "unicode-digit-limit": "limit=%C2%B2",
}


@pytest.mark.parametrize("case", list(BAD_PARAMS))
async def test_malformed_filters_are_400(console: ConsoleLab, case: str) -> None:
    status, _, body = await _get(console, f"/api/records?{BAD_PARAMS[case]}", headers=_bearer(console.token))
    assert status == 400, body
    status, _, _ = await _get(console, f"/traffic?{BAD_PARAMS[case]}", headers=_bearer(console.token))
    assert status == 400


async def test_record_detail_carries_leaf_bytes_and_a_valid_proof(console: ConsoleLab) -> None:
    [row] = await _records(console, f"message_id={console.rejected_id}")
    detail = await _json(console, f"/api/records/{row['index']}")
    fields = detail["fields"]
    assert isinstance(fields, dict)
    assert (fields["sender"], fields["verdict"], fields["reason"]) == (MIG, "rejected", "policy-denied")
    entry = bytes.fromhex(str(detail["entry_hex"]))
    leaf = hashlib.sha256(b"\x00" + entry).digest()
    assert leaf.hex() == detail["leaf_hash"]
    head = detail["tree_head"]
    assert isinstance(head, dict)
    assert head["signature_status"] == "valid"
    verify_inclusion(
        leaf,
        int(str(row["index"])),
        int(head["size"]),
        [bytes.fromhex(h) for h in detail["proof"]],
        bytes.fromhex(head["root"]),
    )


@pytest.mark.parametrize("index", ["-1", "abc", "%C2%B2", "1" * 30])
async def test_malformed_record_index_is_400(console: ConsoleLab, index: str) -> None:
    status, _, _ = await _get(console, f"/api/records/{index}", headers=_bearer(console.token))
    assert status == 400


async def test_unknown_record_is_404(console: ConsoleLab) -> None:
    status, _, _ = await _get(console, "/api/records/999999", headers=_bearer(console.token))
    assert status == 404
    status, _, body = await _get(console, "/records/999999", headers=_bearer(console.token))
    assert status == 404
    assert "no audit entry" in body


async def test_heads_and_volumes(console: ConsoleLab) -> None:
    heads = await _json(console, "/api/heads")
    assert heads["heads"], "no signed tree head listed"
    latest = heads["heads"][0]
    assert latest["signature_status"] == "valid"
    one = await _json(console, f"/api/heads/{latest['size']}")
    assert one["root"] == latest["root"]
    cosigned = await _json(console, f"/api/heads/{console.cosigned_size}")
    assert [(c["witness"], c["status"]) for c in cosigned["cosignatures"]] == [(WITNESS, "valid")]
    status, _, _ = await _get(console, "/api/heads/999999", headers=_bearer(console.token))
    assert status == 404
    pairs = (await _json(console, "/api/stats"))["pairs"]
    by_pair = {(p["sender"], p["recipient"]): p for p in pairs}
    assert by_pair[(MIG, RU)]["rejected"] >= 1
    assert by_pair[(RU, TJ)]["accepted"] >= 2
    status, _, html = await _get(console, "/chart", headers=_bearer(console.token))
    assert status == 200
    assert "<svg" in html
    assert f"{MIG} → {RU}" in html


async def test_output_is_escaped(console: ConsoleLab) -> None:
    probe = "<script>alert(1)</script>"
    status, _, html = await _get(
        console, "/traffic", params={"case_id": probe}, headers=_bearer(console.token)
    )
    assert status == 200
    assert probe not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize("path", ["/traffic", "/rejections", "/heads", "/chart", "/api/records?limit=500"])
async def test_no_message_content_anywhere(console: ConsoleLab, path: str) -> None:
    status, _, body = await _get(console, path, headers=_bearer(console.token))
    assert status == 200
    assert SECRET_TEXT not in body


async def test_start_console_in_process_over_a_gateway_node(console: ConsoleLab) -> None:
    """The API the runner uses: any free port, the same data, and a clean close."""
    lab = console.lab
    assert lab.deployment is not None
    config = load_gateway_config(lab.gateway.config)
    store = SQLiteAuditStore(config.store)  # a second reader of the live gateway's log
    try:
        node = GatewayNode(
            gateway=config.gateway,
            identity=identity(lab, config.gateway),
            directory=load_directory(config.directory),
            store=store,
            metrics=GatewayMetrics(config.gateway),
        )
        handle = await start_console(node, "127.0.0.1", 0, console.token.encode())
        try:
            assert handle.port > 0
            in_process = ConsoleLab(**{**console.__dict__, "url": f"http://127.0.0.1:{handle.port}"})
            [row] = await _records(in_process, f"message_id={console.rejected_id}")
            assert row["reason"] == "policy-denied"
            status, _, _ = await _get(in_process, "/api/records")
            assert status == 401
        finally:
            await handle.close()
        with pytest.raises(aiohttp.ClientConnectionError):
            await _get(in_process, "/login")
    finally:
        store.close()


# --- configuration ---------------------------------------------------------------------------


def test_console_is_off_without_a_section_and_defaults_with_one(console: ConsoleLab, tmp_path: Path) -> None:
    original = console.lab.gateway.config.read_text()
    without = original.split("\n[console]")[0]
    (tmp_path / "plain.toml").write_text(without)
    assert load_gateway_config(tmp_path / "plain.toml").console is None
    (tmp_path / "bare.toml").write_text(without + "\n[console]\n")
    assert load_gateway_config(tmp_path / "bare.toml").console == ConsoleConfig(
        "127.0.0.1:8080", tmp_path / "console.token"
    )


BAD_TOKENS = {
    "missing-file": None,
    "too-short": b"short\n",
    "inner-space": b"0123456789 abcdefghij",
    "empty": b"\n\n",
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_token_files_are_config_errors(tmp_path: Path, case: str) -> None:
    path = tmp_path / "console.token"
    content = BAD_TOKENS[case]
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        load_token(path)
    if content and content.strip():
        assert content.decode().strip() not in str(raised.value)  # the token is never echoed


# --- the browser -------------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1500,1100",
)  # fmt: skip


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip(
            "Debian's chromium/chromium-driver not installed: apt-get install chromium chromium-driver"
        )
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager reach the network
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_browser_login_filter_open_record_and_verify_proof(
    console: ConsoleLab, browser: WebDriver, tmp_path: Path
) -> None:
    d = browser
    wait = WebDriverWait(d, 15)
    d.get(f"{console.url}/traffic")
    wait.until(ec.url_contains("/login"))

    # log in with the token
    d.find_element(By.ID, "token").send_keys(console.token)
    d.find_element(By.ID, "login-button").click()
    wait.until(ec.presence_of_element_located((By.ID, "records")))
    cookies = {c["name"]: c for c in d.get_cookies()}
    assert cookies["liaison_console"]["httpOnly"] is True
    assert cookies["liaison_console"]["sameSite"] == "Strict"

    # filter the traffic table to rejections
    Select(d.find_element(By.NAME, "verdict")).select_by_visible_text("rejected")
    d.find_element(By.ID, "apply").click()
    wait.until(ec.url_contains("verdict=rejected"))
    assert "sender=" not in d.current_url  # empty filters left out
    rows = d.find_elements(By.CSS_SELECTOR, "#records tbody tr")
    assert rows
    assert all("rejected" in (r.get_attribute("class") or "") for r in rows)
    shots = Path(os.environ.get("LIAISON_CONSOLE_SCREENSHOT_DIR", tmp_path))
    d.save_screenshot(str(shots / "traffic-rejected.png"))

    # open the policy rejection
    row = next(r for r in rows if console.rejected_id in r.text)
    row.find_element(By.CSS_SELECTOR, "a.open").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "proof-status"), "verified"))
    fields = {
        e.get_attribute("data-field"): e.find_element(By.TAG_NAME, "td").text
        for e in d.find_elements(By.CSS_SELECTOR, "#fields tr")
    }
    assert fields["message_id"] == console.rejected_id
    assert (fields["sender"], fields["verdict"], fields["reason"]) == (MIG, "rejected", "policy-denied")
    assert fields["recipients"] == RU
    shot = shots / "record.png"
    d.save_screenshot(str(shot))

    # the page's own check fails when the leaf bytes or the root do not match
    for attribute in ("leaf", "root"):
        d.refresh()
        wait.until(ec.text_to_be_present_in_element((By.ID, "proof-status"), "verified"))
        d.execute_script(
            "const p = document.getElementById('proof');"
            "const v = p.dataset[arguments[0]];"
            "p.dataset[arguments[0]] = (v[0] === '0' ? '1' : '0') + v.slice(1);"
            "document.dispatchEvent(new Event('DOMContentLoaded'));",
            attribute,
        )
        wait.until(ec.text_to_be_present_in_element((By.ID, "proof-status"), "FAILED"))

    # every record's proof verifies in the page, whatever its index in the tree
    size = len(d.find_elements(By.CSS_SELECTOR, "ol.path li"))
    assert size >= 1
    heads = d.find_element(By.ID, "head-size").text
    for index in range(int(heads)):
        d.get(f"{console.url}/records/{index}")
        wait.until(ec.text_to_be_present_in_element((By.ID, "proof-status"), "verified"))

    # the other pages render
    for path, element in (("/rejections", "records"), ("/heads", "heads"), ("/chart", "volume-chart")):
        d.get(console.url + path)
        wait.until(ec.presence_of_element_located((By.ID, element)))
        d.save_screenshot(str(shot.with_name(f"{element}.png")))
        if path == "/heads":
            assert f"{WITNESS}: valid" in d.find_element(By.ID, "heads").text
