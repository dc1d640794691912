"""The emulator's HTTP face: DT's REST API under ``/v2``, the token endpoint, OpenID + JWKS.

Thin views over `EmulatorState`. Every success is a 200 with a JSON body (the official SDK
counts nothing else as success); every failure is DT's error body (`errors.py`). Routes:

    POST   /oauth2/token
    GET    /data-connector/.well-known/openid-configuration
    GET    /data-connector/.well-known/jwks.json
    GET    /v2/projects/{p}
    GET    /v2/projects/{p}/dataconnectors                 pageSize/pageToken (or page_size/page_token)
    POST   /v2/projects/{p}/dataconnectors
    GET    /v2/projects/{p}/dataconnectors/{dc}
    PATCH  /v2/projects/{p}/dataconnectors/{dc}            update_mask (or updateMask), optional
    DELETE /v2/projects/{p}/dataconnectors/{dc}
    POST   /v2/projects/{p}/dataconnectors/{dc}:sync
    GET    /v2/projects/{p}/dataconnectors/{dc}:metrics
    GET    /v2/projects/{p}/devices                        device_ids, device_types, label_filters, query, order_by
    GET    /v2/projects/{p}/devices/{d}                    {p} may be "-" (any project)
    GET    /v2/projects/{p}/devices/{d}/events             eventTypes, startTime, endTime, pageSize, pageToken
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from multidict import MultiMapping

from receiver.emulator import auth, oidc
from receiver.emulator.connectors import parse_mask
from receiver.emulator.errors import ApiError, bad_request, error_body
from receiver.emulator.pages import paginate, parse_page_size
from receiver.emulator.state import EmulatorState
from receiver.emulator.timestamps import parse_rfc3339

log = logging.getLogger("receiver.emulator")

Clock = Callable[[], float]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATE_KEY = web.AppKey("emulator_state", EmulatorState)
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("emulator_clock")

DEFAULT_HISTORY_SECONDS = 24 * 3600
MAX_BODY_BYTES = 1024 * 1024
_ID = "{%s:[^/:]+}"


def create_emulator_app(
    state: EmulatorState | None = None, *, clock: Clock = time.time
) -> web.Application:
    """The local DT cloud as an aiohttp app (a seeded `EmulatorState` unless one is given)."""
    app = web.Application(
        middlewares=[_faults_middleware, _errors_middleware, _auth_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[STATE_KEY] = state if state is not None else EmulatorState.seeded(clock())
    app[CLOCK_KEY] = clock
    project = "/v2/projects/" + _ID % "project"
    connector = project + "/dataconnectors/" + _ID % "connector"
    device = project + "/devices/" + _ID % "device"
    app.router.add_post(auth.TOKEN_PATH, token_view)
    app.router.add_get(oidc.OPENID_CONFIGURATION_PATH, openid_configuration_view)
    app.router.add_get(oidc.JWKS_PATH, jwks_view)
    app.router.add_get(project, get_project)
    app.router.add_get(project + "/dataconnectors", list_connectors)
    app.router.add_post(project + "/dataconnectors", create_connector)
    app.router.add_get(connector, get_connector)
    app.router.add_patch(connector, update_connector)
    app.router.add_delete(connector, delete_connector)
    app.router.add_post(connector + ":sync", sync_connector)
    app.router.add_get(connector + ":metrics", connector_metrics)
    app.router.add_get(project + "/devices", list_devices)
    app.router.add_get(device, get_device)
    app.router.add_get(device + "/events", list_events)
    return app


# -- helpers ---------------------------------------------------------------------------


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, content_type="application/json", headers=headers
    )


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


def _now(request: web.Request) -> float:
    return request.app[CLOCK_KEY]()


def _first(query: MultiMapping[str], *names: str) -> str | None:
    for name in names:
        if name in query:
            return query[name]
    return None


def _all(query: MultiMapping[str], *names: str) -> list[str]:
    """Every value of repeated (or comma-separated) query parameters."""
    values: list[str] = []
    for name in names:
        for value in query.getall(name, []):
            values.extend(part for part in value.split(",") if part)
    return values


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise bad_request("request body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request("request body is not valid JSON") from exc


async def _form(request: web.Request) -> dict[str, str]:
    """A form-encoded body, decoded strictly (DT's token endpoint takes nothing else)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise bad_request("expected an application/x-www-form-urlencoded body")
    try:
        text = (await request.read()).decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request("malformed form body") from exc
    return dict(pairs)


def _page(request: web.Request, items: list[Any], key: str) -> web.Response:
    query = request.query
    size = parse_page_size(_first(query, "pageSize", "page_size"))
    page, next_token = paginate(items, size, _first(query, "pageToken", "page_token"))
    return _json({key: page, "nextPageToken": next_token})


def _base_url(request: web.Request) -> str:
    state = _state(request)
    return state.base_url or f"{request.scheme}://{request.host}"


# -- middlewares -----------------------------------------------------------------------


@web.middleware
async def _faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    faults = _state(request).faults
    rule = faults.take(request.method, request.path)
    if rule is not None and rule.kind == "fail":
        headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
        if rule.body is not None:
            return web.Response(
                body=rule.body, status=rule.status, content_type="text/html", headers=headers
            )
        return _json(
            error_body(rule.status, _REASONS.get(rule.status, "error")), rule.status, headers
        )
    response = await handler(request)
    delay = faults.delay_seconds + (
        rule.seconds if rule is not None and rule.kind == "delay" else 0.0
    )
    if delay > 0:
        await asyncio.sleep(delay)
    if rule is not None and rule.kind == "drop" and request.transport is not None:
        request.transport.abort()
    return response


_REASONS = {
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _json(exc.body(), exc.status, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {404: "not found", 405: "method not allowed", 413: "request body too large"}
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _json(
            error_body(exc.status, message.get(exc.status, exc.reason.lower())), exc.status, headers
        )
    except Exception:
        log.exception("emulator_view_failed", extra={"fields": {"path": request.path}})
        return _json(error_body(500, "internal server error"), 500)


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v2/"):
        state = _state(request)
        auth.check_authorization(
            request.headers.get("Authorization"), state.tokens, state.accounts, _now(request)
        )
    return await handler(request)


# -- identity --------------------------------------------------------------------------


async def token_view(request: web.Request) -> web.Response:
    state = _state(request)
    assertion = auth.check_token_request(await _form(request))
    audiences = {f"{request.scheme}://{request.host}{auth.TOKEN_PATH}", auth.DT_TOKEN_URL}
    if state.base_url:
        audiences.add(state.base_url.rstrip("/") + auth.TOKEN_PATH)
    now = _now(request)
    account = auth.check_assertion(assertion, state.accounts, audiences, now)
    token = state.issue_token(account.key_id, now)
    return _json(
        {"access_token": token, "token_type": "bearer", "expires_in": int(state.token_ttl_seconds)}
    )


async def openid_configuration_view(request: web.Request) -> web.Response:
    return _json(oidc.openid_configuration(_base_url(request)))


async def jwks_view(request: web.Request) -> web.Response:
    return _json(_state(request).signing_keys.jwks(_now(request)))


# -- projects and data connectors ------------------------------------------------------


async def get_project(request: web.Request) -> web.Response:
    return _json(_state(request).project(request.match_info["project"]).to_json())


async def list_connectors(request: web.Request) -> web.Response:
    connectors = _state(request).list_connectors(request.match_info["project"])
    return _page(request, [c.to_json() for c in connectors], "dataConnectors")


async def create_connector(request: web.Request) -> web.Response:
    state = _state(request)
    project_id = request.match_info["project"]
    state.project(project_id)
    body = await _body(request)
    return _json(state.create_connector(project_id, body, _now(request)).to_json())


async def get_connector(request: web.Request) -> web.Response:
    info = request.match_info
    return _json(_state(request).get_connector(info["project"], info["connector"]).to_json())


async def update_connector(request: web.Request) -> web.Response:
    state = _state(request)
    info = request.match_info
    state.get_connector(info["project"], info["connector"])
    mask = parse_mask(
        request.query.getall("update_mask", []) + request.query.getall("updateMask", [])
    )
    body = await _body(request)
    return _json(state.update_connector(info["project"], info["connector"], body, mask).to_json())


async def delete_connector(request: web.Request) -> web.Response:
    info = request.match_info
    _state(request).delete_connector(info["project"], info["connector"])
    return _json({})


async def sync_connector(request: web.Request) -> web.Response:
    info = request.match_info
    _state(request).sync_connector(info["project"], info["connector"], _now(request))
    return _json({})


async def connector_metrics(request: web.Request) -> web.Response:
    info = request.match_info
    return _json(
        _state(request).connector_metrics(info["project"], info["connector"], _now(request))
    )


# -- devices and event history ---------------------------------------------------------


async def list_devices(request: web.Request) -> web.Response:
    query = request.query
    devices = _state(request).list_devices(
        request.match_info["project"],
        device_ids=_all(query, "device_ids", "deviceIds"),
        device_types=_all(query, "device_types", "deviceTypes"),
        label_filters=query.getall("label_filters", []) + query.getall("labelFilters", []),
        query=_first(query, "query") or "",
        order_by=_first(query, "order_by", "orderBy") or "",
    )
    return _page(request, [d.to_json() for d in devices], "devices")


async def get_device(request: web.Request) -> web.Response:
    info = request.match_info
    return _json(_state(request).get_device(info["project"], info["device"]).to_json())


def _time_param(query: MultiMapping[str], *names: str) -> float | None:
    raw = _first(query, *names)
    if raw is None or raw == "":
        return None
    try:
        return parse_rfc3339(raw)
    except ValueError as exc:
        raise bad_request(f"{names[0]}: not an RFC 3339 timestamp") from exc


async def list_events(request: web.Request) -> web.Response:
    query = request.query
    info = request.match_info
    end = _time_param(query, "endTime", "end_time")
    start = _time_param(query, "startTime", "start_time")
    end = _now(request) if end is None else end
    start = end - DEFAULT_HISTORY_SECONDS if start is None else start
    events = _state(request).device_events(
        info["project"],
        info["device"],
        start=start,
        end=end,
        event_types=_all(query, "eventTypes", "event_types"),
    )
    return _page(request, events, "events")
