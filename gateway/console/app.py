"""The read-only web console for embassy operators (aiohttp, in the gateway's event loop).

Routes, authentication and security headers; the reads themselves live in
:mod:`gateway.console.data` and run in worker threads so the gateway's loop
never waits on the store. Pages are Jinja2 templates with autoescaping on;
the only script is the package's own ``console.js`` (the CSP forbids inline
and foreign scripts). There are no write endpoints besides log in and log
out. The console does not terminate TLS: bind it to loopback or put it
behind a TLS proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final
from urllib.parse import urlencode

import jinja2
import structlog
from aiohttp import web

from exchange.core.errors import ConfigError, LiaisonError
from gateway.config import ConsoleConfig
from gateway.console import data
from gateway.console.auth import (
    SESSION_COOKIE,
    SESSION_TTL_S,
    Sessions,
    bearer_token,
    load_token,
    token_matches,
)
from gateway.console.views import (
    FILTER_KEYS,
    KIND_LABELS,
    PRIORITY_LABELS,
    REASON_LABELS,
    VERDICT_LABELS,
    FilterError,
    iso_ms,
    page_size_from,
    parse_filters,
)
from gateway.node import GatewayNode

__all__ = ["ConsoleHandle", "start_console", "start_console_from_config"]

log = structlog.get_logger()

MAX_REQUEST_BYTES: Final = 16 * 1024
PUBLIC_PATHS: Final = frozenset({"/login", "/static/console.css"})
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes browsers send Origin: null
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
HTTP_STATUS: Final = {
    "INVALID_ARGUMENT": 400, "OUT_OF_RANGE": 400, "NOT_FOUND": 404, "FAILED_PRECONDITION": 409,
    "ALREADY_EXISTS": 409, "UNAVAILABLE": 503, "DATA_LOSS": 500,
}  # fmt: skip
STATIC: Final = {"console.js": "application/javascript", "console.css": "text/css"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Console:
    node: GatewayNode
    token: bytes = field(repr=False)
    templates: jinja2.Environment
    sessions: Sessions = field(default_factory=Sessions)
    static: dict[str, bytes] = field(default_factory=dict)


CONSOLE: Final = web.AppKey("console", _Console)


@dataclass
class ConsoleHandle:
    """A running console; ``port`` is the bound port (useful when asked for port 0)."""

    port: int
    _runner: web.AppRunner = field(repr=False)

    async def close(self) -> None:
        await self._runner.cleanup()


# --- middleware --------------------------------------------------------------------------


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def _authenticated(request: web.Request) -> bool:
    console = request.app[CONSOLE]
    offered = bearer_token(request.headers.get("Authorization"))
    if offered is not None:
        return token_matches(console.token, offered)
    return console.sessions.valid(request.cookies.get(SESSION_COOKIE))


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or _authenticated(request):
        return await handler(request)
    if _wants_json(request) or "Authorization" in request.headers:
        return web.json_response(
            {"error": "authentication required"}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )
    raise web.HTTPFound("/login")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LiaisonError as e:
        status = HTTP_STATUS.get(type(e).grpc_status, 500)
        if _wants_json(request):
            return web.json_response({"error": str(e)}, status=status)
        return _page(request, "error.html", {"message": str(e)}, status=status)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


# --- rendering ---------------------------------------------------------------------------


def _page(
    request: web.Request, template: str, context: dict[str, object], *, status: int = 200
) -> web.Response:
    console = request.app[CONSOLE]
    html = console.templates.get_template(template).render(
        {**context, "path": request.path, "gateway": console.node.gateway}
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


async def _run(
    request: web.Request, fn: Callable[..., dict[str, object]], *args: Any, **kwargs: Any
) -> dict[str, object]:
    return await asyncio.to_thread(fn, request.app[CONSOLE].node, *args, **kwargs)


def _filter_context(request: web.Request) -> dict[str, object]:
    offices = sorted(request.app[CONSOLE].node.directory.directory.office_ids())
    return {
        "params": {k: request.query.get(k, "") for k in FILTER_KEYS},
        "offices": offices,
        "kinds": KIND_LABELS,
        "verdicts": VERDICT_LABELS,
        "reasons": REASON_LABELS,
        "priorities": PRIORITY_LABELS,
    }


def _next_url(request: web.Request, token: object) -> str:
    if not isinstance(token, str):
        return ""
    query = {k: v for k, v in request.query.items() if k != "page" and v}
    return f"{request.path}?{urlencode({**query, 'page': token})}"


def _listing(request: web.Request, page: dict[str, object]) -> dict[str, object]:
    return {**page, **_filter_context(request), "next_url": _next_url(request, page["next_page"])}


def _index(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise FilterError(f"{name}: expected a non-negative integer")
    return int(text)


# --- handlers ----------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.StreamResponse:
    return _page(request, "login.html", {"error": ""})


async def login(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(text="cross-origin login refused")
    form = await request.post()
    offered = form.get("token")
    console = request.app[CONSOLE]
    if not isinstance(offered, str) or not token_matches(console.token, offered.strip()):
        log.warning("console_login_refused", remote=request.remote)
        return _page(request, "login.html", {"error": "That token is not valid."}, status=401)
    log.info("console_login", remote=request.remote)
    response = web.HTTPSeeOther("/traffic")
    response.set_cookie(
        SESSION_COOKIE, console.sessions.open(), httponly=True, samesite="Strict", path="/",
        max_age=SESSION_TTL_S,
    )  # fmt: skip
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[CONSOLE].sessions.close(request.cookies.get(SESSION_COOKIE))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/traffic")


async def traffic(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query)
    page = await _run(
        request, data.list_records, filters, page_size_from(request.query), request.query.get("page")
    )
    return _page(request, "traffic.html", _listing(request, page))


async def rejections(request: web.Request) -> web.StreamResponse:
    filters = parse_filters({**request.query, "verdict": "rejected"})
    page = await _run(
        request, data.list_records, filters, page_size_from(request.query), request.query.get("page"),
        details=True,
    )  # fmt: skip
    return _page(request, "rejections.html", _listing(request, page))


async def record(request: web.Request) -> web.StreamResponse:
    view = await _run(request, data.record_view, _index(request, "index"))
    return _page(request, "record.html", {"r": view, "iso_ms": iso_ms})


async def heads(request: web.Request) -> web.StreamResponse:
    view = await _run(request, data.list_heads)
    return _page(request, "heads.html", {**view, "iso_ms": iso_ms})


async def chart(request: web.Request) -> web.StreamResponse:
    filters = parse_filters({k: request.query.get(k, "") for k in ("since", "until")})
    view = await _run(request, data.stats_view, filters.since_ms, filters.until_ms)
    return _page(request, "chart.html", {"chart": view["chart"], **_filter_context(request)})


async def api_records(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query)
    page = await _run(
        request, data.list_records, filters, page_size_from(request.query), request.query.get("page")
    )
    return web.json_response(page)


async def api_record(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _run(request, data.record_view, _index(request, "index")))


async def api_heads(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _run(request, data.list_heads))


async def api_head(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _run(request, data.head_view, _index(request, "size")))


async def api_stats(request: web.Request) -> web.StreamResponse:
    filters = parse_filters({k: request.query.get(k, "") for k in ("since", "until")})
    view = await _run(request, data.stats_view, filters.since_ms, filters.until_ms)
    return web.json_response({"pairs": view["pairs"]})


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    body = request.app[CONSOLE].static.get(name)
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type=STATIC[name], charset="utf-8")


# --- the application ---------------------------------------------------------------------


def build_app(node: GatewayNode, token: bytes) -> web.Application:
    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    package = resources.files("gateway.console") / "static"
    console = _Console(
        node, token, templates, static={name: (package / name).read_bytes() for name in STATIC}
    )
    app = web.Application(middlewares=[_auth, _errors], client_max_size=MAX_REQUEST_BYTES)
    app[CONSOLE] = console
    app.on_response_prepare.append(_security_headers)
    app.add_routes(
        [
            web.get("/login", login_form),
            web.post("/login", login),
            web.post("/logout", logout),
            web.get("/", root),
            web.get("/traffic", traffic),
            web.get("/rejections", rejections),
            web.get("/records/{index}", record),
            web.get("/heads", heads),
            web.get("/chart", chart),
            web.get("/api/records", api_records),
            web.get("/api/records/{index}", api_record),
            web.get("/api/heads", api_heads),
            web.get("/api/heads/{size}", api_head),
            web.get("/api/stats", api_stats),
            web.get("/static/{name}", static),
        ]
    )
    return app


async def start_console(node: GatewayNode, host: str, port: int, token: bytes) -> ConsoleHandle:
    """Serve the console on ``host:port`` (0: any free port) in the running event loop."""
    runner = web.AppRunner(build_app(node, token), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError(f"console cannot listen on {host}:{port}: {e.strerror}") from None
    bound = int(runner.addresses[0][1])
    log.info("console_serving", host=host, port=bound)
    return ConsoleHandle(bound, runner)


async def start_console_from_config(node: GatewayNode, cfg: ConsoleConfig) -> ConsoleHandle:
    """Start the console a gateway config's ``[console]`` section describes."""
    host, sep, port = cfg.listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"[console] listen {cfg.listen!r} must be host:port")
    return await start_console(node, host.strip("[]") or "127.0.0.1", int(port), load_token(cfg.token_file))
