"""API errors and the one place where every error becomes ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker_bridge.errors import TetherError
from tether.protocol import ProtocolError
from tether.protocol.cursor import CursorError


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(message)


def unauthorized(message: str = "a valid bearer token is required") -> ApiError:
    return ApiError(401, "unauthorized", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def too_large(message: str) -> ApiError:
    return ApiError(413, "too_large", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def as_api_error(exc: Exception) -> ApiError:
    """Map any known error to its API form; unknown errors are not mapped (they are bugs)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, TetherError):
        return ApiError(exc.status, exc.code, exc.message)
    if isinstance(exc, ProtocolError | CursorError):
        return bad_request(str(exc))
    raise exc


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(error: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error_body(error.code, error.message), error.status, headers=headers)


async def handle_known_errors(request: Request, exc: Exception) -> Response:
    return error_response(as_api_error(exc))
