"""The OpenAPI 3.1 description of the REST API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from tether import __version__
from tether.protocol import MAX_ARGS_BYTES, CommandState
from tether.protocol.payloads import NAME_PATTERN
from ui_gateway.requests import IDEMPOTENCY_KEY_PATTERN

DEVICE_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"}
STATES = [s.value for s in CommandState]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: str, status: str = "200") -> dict[str, Any]:
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }


COMMON = {
    "400": _error("bad input: a malformed device id, body, header or query"),
    "401": _error("missing or unknown token"),
    "403": _error("the token's role is too low"),
}
DEVICE_PARAM = {"name": "device_id", "in": "path", "required": True, "schema": DEVICE_ID}
COMMAND_PARAM = {
    "name": "command_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "enum": [
                            "bad_request",
                            "unauthorized",
                            "forbidden",
                            "unknown_device",
                            "queue_full",
                            "conflict",
                            "too_large",
                            "not_found",
                            "unavailable",
                        ],
                    },
                    "message": {"type": "string"},
                },
            }
        },
    },
    "Command": {
        "type": "object",
        "required": ["id", "device", "name", "args", "state", "attempts", "issued_at", "times"],
        "properties": {
            "id": {"type": "string"},
            "device": DEVICE_ID,
            "name": {"type": "string"},
            "args": {"type": "object"},
            "state": {"type": "string", "enum": STATES},
            "attempts": {"type": "integer", "minimum": 0},
            "issued_at": {"type": "string", "format": "date-time"},
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "result": {},
            "error": {"type": ["string", "null"]},
            "idempotency_key": {"type": ["string", "null"]},
            "ended_by": {
                "type": ["string", "null"],
                "enum": ["device", "operator", "tether", None],
            },
            "cancel": {"type": ["string", "null"], "enum": ["done", "requested", None]},
            "late": {
                "description": "what the device reported after the command was final",
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["status", "at"],
                        "properties": {
                            "status": {"type": "string"},
                            "result": {},
                            "error": {"type": "string"},
                            "at": {"type": "string", "format": "date-time"},
                        },
                    },
                    {"type": "null"},
                ],
            },
            "times": {
                "type": "object",
                "additionalProperties": {"type": "string", "format": "date-time"},
            },
        },
    },
    "SendCommand": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NAME_PATTERN},
            "args": {"type": "object", "description": f"at most {MAX_ARGS_BYTES} bytes encoded"},
            "ttl": {"type": "number", "exclusiveMinimum": 0, "maximum": 31622400},
        },
    },
    "Device": {
        "type": "object",
        "required": ["id", "online", "pending"],
        "properties": {
            "id": DEVICE_ID,
            "username": {"type": "string"},
            "provisioned_at": {"type": "string", "format": "date-time"},
            "revoked": {"type": "boolean"},
            "revoked_at": {"type": ["string", "null"], "format": "date-time"},
            "online": {"type": "boolean"},
            "last_seen": {"type": ["string", "null"], "format": "date-time"},
            "connected_since": {"type": ["string", "null"], "format": "date-time"},
            "agent": {"type": ["string", "null"]},
            "features": {"type": "array", "items": {"type": "string"}},
            "confirmed": {
                "type": ["boolean", "null"],
                "description": "online: false while only a replayed retained status says so",
            },
            "reconnects_last_hour": {"type": "integer"},
            "pending": {"type": "integer"},
            "last_command": {"oneOf": [{"$ref": "#/components/schemas/Command"}, {"type": "null"}]},
        },
    },
    "DeviceList": {
        "type": "object",
        "properties": {
            "devices": {"type": "array", "items": {"$ref": "#/components/schemas/Device"}},
            "shards": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Credentials": {
        "type": "object",
        "required": ["id", "username", "password"],
        "properties": {
            "id": DEVICE_ID,
            "username": {"type": "string"},
            "password": {"type": "string"},
        },
    },
    "CommandList": {
        "type": "object",
        "properties": {
            "commands": {"type": "array", "items": {"$ref": "#/components/schemas/Command"}}
        },
    },
    "Fleet": {
        "type": "object",
        "properties": {
            "workers": {
                "type": "array",
                "description": "(extension) the owner of each shard group, one entry per group; "
                "empty when the gateway runs in the same process as the bridge",
                "items": {"$ref": "#/components/schemas/Worker"},
            }
        },
    },
    "Worker": {
        "type": "object",
        "description": "A shard group and the bridge worker that holds its lease, as that worker "
        "last reported it; `owner` is null while no live worker owns the group (a takeover is "
        "due: commands to its devices get 503 until one does)",
        "required": ["group", "owner"],
        "properties": {
            "group": {"type": "integer", "minimum": 0},
            "owner": {"type": ["string", "null"], "description": "the owner's worker name"},
            "worker": {"type": "string"},
            "pid": {"type": "integer"},
            "host": {"type": "string"},
            "client_id": {"type": "string", "description": "the group's MQTT session"},
            "shards": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "since": {"type": "string", "format": "date-time", "description": "owner since"},
            "at": {"type": "string", "format": "date-time", "description": "the status's time"},
            "status_age_seconds": {"type": "number"},
            "stale": {
                "type": "boolean",
                "description": "the owner has been silent too long: it does not count as an owner",
            },
            "events_behind": {
                "type": "object",
                "description": "per shard: events the owner committed that this gateway's live "
                "feed has not yet seen (null: no live feed)",
                "additionalProperties": {"type": ["integer", "null"], "minimum": 0},
            },
        },
    },
    "FleetHistory": {
        "type": "object",
        "required": ["range", "range_seconds", "step_seconds", "from", "to", "points"],
        "properties": {
            "range": {"type": "string", "enum": ["15m", "1h", "6h"]},
            "range_seconds": {"type": "integer"},
            "step_seconds": {"type": "integer"},
            "from": {"type": "integer", "description": "epoch seconds, the first minute"},
            "to": {"type": "integer", "description": "epoch seconds, the end of the last minute"},
            "points": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["t", "finished", "states", "count", "p50_ms", "p99_ms"],
                    "properties": {
                        "t": {"type": "integer", "description": "epoch seconds of the minute"},
                        "finished": {"type": "integer", "minimum": 0},
                        "states": {
                            "type": "object",
                            "additionalProperties": {"type": "integer"},
                        },
                        "count": {"type": "integer", "minimum": 0},
                        "p50_ms": {"type": ["number", "null"]},
                        "p99_ms": {"type": ["number", "null"]},
                    },
                },
            },
            "latency_ms": {"type": "object"},
            "shards": {"type": "array", "items": {"type": "object"}},
        },
    },
    "DeviceEvents": {
        "type": "object",
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kind", "at", "data"],
                    "properties": {
                        "kind": {"type": "string", "enum": ["presence", "device_event"]},
                        "at": {"type": "string", "format": "date-time"},
                        "data": {"type": "object"},
                    },
                },
            }
        },
    },
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tether",
            "version": __version__,
            "description": "Commands to IoT devices, every hop recorded.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/devices": {
                "get": {
                    "summary": "All active devices; with ?revoked=true the revoked ones instead",
                    "parameters": [
                        {
                            "name": "revoked",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["true", "false"]},
                        }
                    ],
                    "responses": {
                        **_ok("devices", "DeviceList"),
                        "400": _error("bad query"),
                        **COMMON,
                    },
                },
                "post": {
                    "summary": "Provision a device (admin); the password is shown once",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["id"],
                                    "additionalProperties": False,
                                    "properties": {"id": DEVICE_ID},
                                }
                            }
                        },
                    },
                    "responses": {
                        **_ok("provisioned", "Credentials", "201"),
                        "400": _error("bad id or body"),
                        "409": _error("the device exists"),
                        "413": _error("body too large"),
                        **COMMON,
                    },
                },
            },
            "/api/devices/{device_id}": {
                "parameters": [DEVICE_PARAM],
                "get": {
                    "summary": "One device; a revoked one too, marked revoked",
                    "responses": {
                        **_ok("device", "Device"),
                        "404": _error("unknown device"),
                        **COMMON,
                    },
                },
                "delete": {
                    "summary": "Revoke a device (admin)",
                    "responses": {
                        **_ok("revoked", "Device"),
                        "404": _error("unknown device"),
                        **COMMON,
                    },
                },
            },
            "/api/devices/{device_id}/rotate": {
                "parameters": [DEVICE_PARAM],
                "post": {
                    "summary": "A new password (admin); the old login stops working at once",
                    "responses": {
                        **_ok("new credentials", "Credentials"),
                        "404": _error("unknown device"),
                        **COMMON,
                    },
                },
            },
            "/api/devices/{device_id}/commands": {
                "parameters": [DEVICE_PARAM],
                "get": {
                    "summary": "Command history, newest first (kept after a revoke)",
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"type": "string", "enum": STATES},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                        },
                        {"name": "before", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        **_ok("history", "CommandList"),
                        "400": _error("bad query"),
                        "404": _error("unknown device"),
                        **COMMON,
                    },
                },
                "post": {
                    "summary": "Send a command (operator)",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/SendCommand"}
                            }
                        },
                    },
                    "responses": {
                        **_ok("accepted", "Command", "202"),
                        "400": _error("bad input"),
                        "404": _error("unknown device"),
                        "409": _error("Idempotency-Key reused with another body"),
                        "413": _error("too large"),
                        "422": _error("invalid fields"),
                        "429": _error("queue_full"),
                        **COMMON,
                    },
                },
            },
            "/api/devices/{device_id}/events": {
                "parameters": [DEVICE_PARAM],
                "get": {
                    "summary": "A device's latest presence changes and events, newest first",
                    "parameters": [
                        {
                            "name": "kind",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["presence", "device_event"]},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                        },
                    ],
                    "responses": {
                        **_ok("events", "DeviceEvents"),
                        "400": _error("bad query"),
                        "404": _error("unknown device"),
                        **COMMON,
                    },
                },
            },
            "/api/commands/{command_id}": {
                "parameters": [COMMAND_PARAM],
                "get": {
                    "summary": "One command",
                    "responses": {
                        **_ok("command", "Command"),
                        "404": _error("no such command"),
                        **COMMON,
                    },
                },
            },
            "/api/commands/{command_id}/cancel": {
                "parameters": [COMMAND_PARAM],
                "post": {
                    "summary": "Cancel before delivery (operator)",
                    "responses": {
                        **_ok("cancelled", "Command"),
                        "404": _error("no such command"),
                        "409": _error("already delivered or finished"),
                        **COMMON,
                    },
                },
            },
            "/api/fleet": {
                "get": {
                    "summary": "Fleet aggregates across shards",
                    "responses": {**_ok("fleet", "Fleet"), **COMMON},
                }
            },
            "/api/fleet/history": {
                "get": {
                    "summary": "Per-minute fleet history from the store (finished commands, "
                    "end-to-end latency) and hop latency over the range",
                    "parameters": [
                        {
                            "name": "range",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["15m", "1h", "6h"]},
                        }
                    ],
                    "responses": {
                        **_ok("history", "FleetHistory"),
                        "400": _error("unknown range"),
                        **COMMON,
                    },
                }
            },
            "/api/events": {
                "get": {
                    "summary": "Server-Sent Events; resume with Last-Event-ID",
                    "responses": {"200": {"description": "text/event-stream"}, **COMMON},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": {"description": "alive"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness",
                    "security": [],
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    },
                }
            },
        },
    }
