"""The read-only web console for embassy operators (aiohttp, in the gateway's event loop).

Routes, authentication and security headers; the reads themselves live in
:mod:`gateway.console.data` and run in worker threads so the gateway's loop
never waits on the store. Pages are Jinja2 templates with autoescaping on;
the only script is the package's own ``console.js`` (the CSP forbids inline
and foreign scripts). There are no write endpoints besides log in and log
out, and every state-changing request must come from the console's own
origin (``Origin``, else ``Referer``; neither: refused). It serves HTTPS with
``[console] tls_cert``/``tls_key`` and refuses a non-loopback address without
them. Failed credentials are throttled per remote address
(:class:`gateway.console.auth.LoginThrottle`); each login is logged with the
operator's name.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import jinja2
import structlog
from aiohttp import web

from exchange.core.errors import ConfigError, LiaisonError, map_exceptions
from gateway.config import ConsoleConfig, is_loopback
from gateway.console import data
from gateway.console.auth import (
    SESSION_COOKIE,
    SESSION_TTL_S,
    LoginThrottle,
    Operators,
    Sessions,
    bearer_token,
    load_operators,
    load_token,
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
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Console:
    node: GatewayNode
    operators: Operators = field(repr=False)
    templates: jinja2.Environment
    sessions: Sessions = field(default_factory=Sessions)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    static: dict[str, bytes] = field(default_factory=dict)
    secure: bool = False  # served over TLS: the session cookie is Secure
    origin: str = ""  # the public origin, when a proxy fronts the console


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


def _remote(request: web.Request) -> str:
    return request.remote or "unknown"


def _throttled(request: web.Request) -> web.Response | None:
    """429 while this remote address has too many recent failures (right tokens included)."""
    wait_s = request.app[CONSOLE].throttle.retry_after_s(_remote(request))
    if not wait_s:
        return None
    log.warning("console_login_throttled", remote=_remote(request), retry_after_s=wait_s)
    return web.json_response(
        {"error": "too many failed logins from this address; try again later"},
        status=429,
        headers={"Retry-After": str(wait_s)},
    )


def _operator(request: web.Request) -> str | web.Response | None:
    """The operator a bearer token or session names; a 429 response while throttled."""
    console = request.app[CONSOLE]
    offered = bearer_token(request.headers.get("Authorization"))
    if offered is not None:
        if (busy := _throttled(request)) is not None:
            return busy
        who = console.operators.who(offered)
        if who is None:
            console.throttle.failed(_remote(request))
            log.warning("console_bearer_refused", remote=_remote(request))
        return who
    return console.sessions.operator(request.cookies.get(SESSION_COOKIE))


def _expected_origin(request: web.Request) -> str:
    return request.app[CONSOLE].origin or f"{request.scheme}://{request.host}"


def _origin_of(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"
    return None


@web.middleware
async def _same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every state-changing request comes from the console's own pages, or is refused (CSRF)."""
    if request.method not in SAFE_METHODS and _origin_of(request) != _expected_origin(request):
        log.warning("console_cross_origin_refused", method=request.method, path=request.path)
        raise web.HTTPForbidden(text="cross-origin request refused")
    return await handler(request)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    who = _operator(request)
    if isinstance(who, web.Response):
        return who
    if who is not None:
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
    console = request.app[CONSOLE]
    if (busy := _throttled(request)) is not None:
        page = _page(request, "login.html", {"error": "Too many failed logins: try again later."}, status=429)
        page.headers["Retry-After"] = busy.headers["Retry-After"]
        return page
    form = await request.post()
    offered = form.get("token")
    who = console.operators.who(offered.strip()) if isinstance(offered, str) else None
    if who is None:
        console.throttle.failed(_remote(request))
        log.warning("console_login_refused", remote=_remote(request))
        return _page(request, "login.html", {"error": "That token is not valid."}, status=401)
    log.info("console_login", operator=who, remote=_remote(request))
    response = web.HTTPSeeOther("/traffic")
    response.set_cookie(
        SESSION_COOKIE, console.sessions.open(who), httponly=True, samesite="Strict", path="/",
        max_age=SESSION_TTL_S, secure=console.secure,
    )  # fmt: skip
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    session = request.cookies.get(SESSION_COOKIE)
    who = console.sessions.operator(session)
    console.sessions.close(session)
    if who is not None:
        log.info("console_logout", operator=who, remote=_remote(request))
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


def build_app(
    node: GatewayNode, operators: Operators, *, secure: bool = False, origin: str = ""
) -> web.Application:
    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    package = resources.files("gateway.console") / "static"
    console = _Console(
        node, operators, templates, static={name: (package / name).read_bytes() for name in STATIC},
        secure=secure, origin=origin,
    )  # fmt: skip
    app = web.Application(middlewares=[_same_origin, _auth, _errors], client_max_size=MAX_REQUEST_BYTES)
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


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context from PEM files; unreadable files are one ConfigError."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with map_exceptions({OSError: ConfigError, ssl.SSLError: ConfigError}, f"console TLS ({cert}, {key})"):
        context.load_cert_chain(cert, key)
    return context


async def start_console(
    node: GatewayNode,
    host: str,
    port: int,
    credentials: bytes | Operators,
    *,
    tls: ssl.SSLContext | None = None,
    origin: str = "",
) -> ConsoleHandle:
    """Serve the console on ``host:port`` (0: any free port) in the running event loop.

    ``credentials``: the operators (or one shared token). Without ``tls`` only a loopback
    ``host`` is accepted.
    """
    if tls is None and not is_loopback(host):
        raise ConfigError(f"console on {host}:{port} without TLS: only a loopback address may serve HTTP")
    operators = credentials if isinstance(credentials, Operators) else Operators.shared(credentials)
    app = build_app(node, operators, secure=tls is not None, origin=origin)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError(f"console cannot listen on {host}:{port}: {e.strerror}") from None
    bound = int(runner.addresses[0][1])
    log.info("console_serving", host=host, port=bound, tls=tls is not None)
    return ConsoleHandle(bound, runner)


async def start_console_from_config(node: GatewayNode, cfg: ConsoleConfig) -> ConsoleHandle:
    """Start the console a gateway config's ``[console]`` section describes."""
    host, port = cfg.host_port
    credentials = load_operators(cfg.operators_file) if cfg.operators_file else load_token(cfg.token_file)
    tls = server_tls(cfg.tls_cert, cfg.tls_key) if cfg.tls_cert and cfg.tls_key else None
    return await start_console(node, host, port, credentials, tls=tls, origin=cfg.origin)
