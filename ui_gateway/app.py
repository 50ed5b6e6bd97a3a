"""The one ASGI app: REST, WebSocket, SSE and the dashboard, over a command service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Match, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from tether.protocol.service import HISTORY_RANGES, CommandService
from ui_gateway import api
from ui_gateway.auth import Role, TokenTable
from ui_gateway.context import Gateway, gateway_of
from ui_gateway.errors import BadRequest, NotFound, TetherError, error_response, handle_error
from ui_gateway.figures import fleet_with_figures
from ui_gateway.metrics import metrics_endpoint
from ui_gateway.openapi import openapi_document
from ui_gateway.settings import GatewaySettings
from ui_gateway.sse import events_endpoint
from ui_gateway.ws import websocket_endpoint


async def dashboard(request: Request) -> Response:
    return FileResponse(gateway_of(request).settings.static_dir / "index.html")


async def fleet(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.VIEWER)
    return JSONResponse(await fleet_with_figures(gateway.service))


async def history(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.VIEWER)
    range_name = request.query_params.get("range", "1h")
    if range_name not in HISTORY_RANGES:
        raise BadRequest(f"?range must be one of {', '.join(HISTORY_RANGES)}")
    return JSONResponse(await gateway.service.history(range_name))


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


def create_app(
    service: CommandService, tokens: TokenTable, settings: GatewaySettings | None = None
) -> Starlette:
    """``service`` is started in the app's lifespan and stopped with it."""
    settings = settings or GatewaySettings()
    gateway = Gateway(service, tokens, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        gateway.ready = True
        try:
            yield
        finally:
            gateway.ready = False
            await service.stop()

    routes = [
        Route("/", dashboard),
        Mount(
            "/static", StaticFiles(directory=settings.static_dir, check_dir=False), name="static"
        ),
        WebSocketRoute("/ws", websocket_endpoint),
        Route("/api/events", events_endpoint),
        Route("/api/devices", api.list_all_devices, methods=["GET"]),
        Route("/api/devices", api.provision_device, methods=["POST"]),
        Route("/api/devices/{device_id}", api.one_device, methods=["GET"]),
        Route("/api/devices/{device_id}", api.revoke_device, methods=["DELETE"]),
        Route("/api/devices/{device_id}/rotate", api.rotate_password, methods=["POST"]),
        Route("/api/devices/{device_id}/commands", api.command_history, methods=["GET"]),
        Route("/api/devices/{device_id}/commands", api.send_command, methods=["POST"]),
        Route("/api/devices/{device_id}/events", api.device_event_history, methods=["GET"]),
        Route("/api/commands/{command_id}", api.one_command, methods=["GET"]),
        Route("/api/commands/{command_id}/cancel", api.cancel_command, methods=["POST"]),
        Route("/api/fleet", fleet),
        Route("/api/fleet/history", history),
        Route("/metrics", metrics_endpoint),
        Route("/healthz", api.healthz),
        Route("/readyz", api.readyz),
        Route("/openapi.json", openapi),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            TetherError: handle_error,
            404: _not_found,
            405: _not_allowed,
            Exception: handle_error,
        },
    )
    app.state.gateway = gateway
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(NotFound(f"no route {request.url.path}"))


async def _not_allowed(request: Request, exc: Exception) -> Response:
    # A path may be served by several routes (one per method): allow what all of them take.
    allowed: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] is Match.PARTIAL:
            allowed |= route.methods or set()
    return error_response(
        BadRequest(f"{request.method} is not allowed here", status=405),
        headers={"Allow": ", ".join(sorted(allowed))},
    )
