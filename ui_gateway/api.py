"""The REST API of the contract's section 4."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tether.protocol import CommandState, new_command_id, validate_device_id
from ui_gateway.auth import Role
from ui_gateway.context import Gateway, gateway_of
from ui_gateway.errors import BadRequest, UnknownDevice
from ui_gateway.requests import parse_send, query_bool, query_int, read_json_body


def _device_id(request: Request) -> str:
    return validate_device_id(request.path_params["device_id"])


async def provision_device(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.ADMIN)
    body = await read_json_body(request, gateway.settings.max_body)
    if not isinstance(body, dict) or set(body) != {"id"}:
        raise BadRequest('the body must be {"id": "<device id>"}')
    device_id = validate_device_id(body["id"])
    record, password = await gateway.service.provision(device_id)
    return JSONResponse(
        {"id": device_id, "username": record["username"], "password": password}, 201
    )


async def rotate_password(request: Request) -> Response:
    """A new password for an existing device (the old login stops working at once)."""
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.ADMIN)
    record, password = await gateway.service.rotate(_device_id(request))
    return JSONResponse({"id": record["id"], "username": record["username"], "password": password})


async def revoke_device(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.ADMIN)
    record = await gateway.service.revoke(_device_id(request))
    return JSONResponse(record)


async def list_all_devices(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.VIEWER)
    revoked = query_bool(request, "revoked", False)
    listed = await gateway.service.devices(revoked=revoked)
    shards = [shard.as_json() for shard in listed.shards]
    return JSONResponse({"devices": listed.devices, "shards": shards})


async def _known_device(gateway: Gateway, device_id: str) -> dict[str, Any]:
    """The device's record, a revoked one too (its history stays readable), or 404."""
    record = await gateway.service.device(device_id)
    if record is None:
        raise UnknownDevice(f"no device {device_id!r}")
    return record


async def one_device(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.VIEWER)
    device_id = _device_id(request)
    return JSONResponse(await _known_device(gateway, device_id))


async def send_command(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.OPERATOR)
    device_id = _device_id(request)
    body = await read_json_body(request, gateway.settings.max_body)
    if isinstance(body, dict) and ({"type", "ref", "device", "idempotency_key"} & set(body)):
        raise BadRequest("fields type/ref/device belong to the WebSocket only", status=422)
    send = parse_send(body, request.headers.get("idempotency-key"))
    accepted = await gateway.service.send(send.command(new_command_id(), device_id))
    return Response(accepted.record_json, 202, media_type="application/json")


async def command_history(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.VIEWER)
    device_id = _device_id(request)
    state = request.query_params.get("state")
    if state is not None and state not in {s.value for s in CommandState}:
        raise BadRequest(f"?state must be one of {', '.join(s.value for s in CommandState)}")
    limit = query_int(request, "limit", 50, 1, gateway.settings.history_limit)
    before = request.query_params.get("before")
    await _known_device(gateway, device_id)
    records = await gateway.service.commands(device_id, state=state, limit=limit, before=before)
    return JSONResponse({"commands": records})


_EVENT_KINDS = ("presence", "device_event")


async def device_event_history(request: Request) -> Response:
    """A device's latest presence changes and device events, newest first (what the event log
    still keeps), for the dashboard's device page."""
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.VIEWER)
    device_id = _device_id(request)
    kind = request.query_params.get("kind")
    if kind is not None and kind not in _EVENT_KINDS:
        raise BadRequest(f"?kind must be one of {', '.join(_EVENT_KINDS)}")
    limit = query_int(request, "limit", 50, 1, gateway.settings.history_limit)
    await _known_device(gateway, device_id)
    kinds = (kind,) if kind else _EVENT_KINDS
    events = await gateway.service.device_events(device_id, kinds, limit)
    return JSONResponse({"events": events})


async def one_command(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.VIEWER)
    return JSONResponse(await gateway.service.command(request.path_params["command_id"]))


async def cancel_command(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.OPERATOR)
    record = await gateway.service.cancel(request.path_params["command_id"])
    return JSONResponse(record)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    gateway = gateway_of(request)
    health = await gateway.service.health()
    ready = gateway.ready and health.broker and health.store
    return JSONResponse(
        {"ready": ready, "broker": health.broker, "store": health.store}, 200 if ready else 503
    )
