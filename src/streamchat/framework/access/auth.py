"""API keys: who is calling, and whether they may.

Keys come from `STREAMCHAT_API_KEYS` (comma-separated) or `STREAMCHAT_API_KEYS_FILE` (one sha256
hex digest per line); only digests are kept in memory. A caller is known by a key id (the first
16 hex digits of the digest), which is safe to store and log. Keys in `STREAMCHAT_ADMIN_KEYS`
(or `..._FILE`) may also read what spans every user: the Workbench's records and traces, the admin
endpoints.

`AuthMiddleware` checks every HTTP request and WebSocket handshake before routing: a token in
`Authorization: Bearer <key>`, in the WebSocket subprotocols (`Authorization, <key>`, as Motia's
clients send it) or, for WebSockets and SSE, in `?authToken=<key>`. Missing or wrong: 401 with
`WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from streamchat.framework.errors import ErrorFormats

DIGEST = re.compile(r"^[0-9a-f]{64}$")


class KeyFileError(ValueError):
    """A keys file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    key_id: str
    admin: bool = False


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_digests(path: Path) -> set[str]:
    """One sha256 hex digest per line; blank lines and `#` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read the keys file ({error.strerror})") from error
    found = set()
    for number, line in enumerate(lines, start=1):
        entry = line.split("#", 1)[0].strip().lower()
        if not entry:
            continue
        if not DIGEST.match(entry):
            raise KeyFileError(f"{path}:{number}: expected a sha256 hex digest (64 hex digits), not a key")
        found.add(entry)
    return found


class ApiKeys:
    """The accepted keys (as digests). Empty: the service runs open."""

    def __init__(self, digests: Iterable[str] = (), admin_digests: Iterable[str] = ()) -> None:
        self.admin = set(admin_digests)
        self.digests = set(digests) | self.admin

    @classmethod
    def from_config(cls, keys: str | None, keys_file: Path | None, admin_keys: str | None = None,
                    admin_keys_file: Path | None = None) -> ApiKeys:
        def gather(plain: str | None, path: Path | None) -> set[str]:
            found = {digest(key.strip()) for key in (plain or "").split(",") if key.strip()}
            return found | (read_digests(path) if path is not None else set())

        return cls(gather(keys, keys_file), gather(admin_keys, admin_keys_file))

    @property
    def required(self) -> bool:
        return bool(self.digests)

    def identify(self, token: str | None) -> Principal | None:
        """The caller a token belongs to, or None. Compares digests in constant time."""
        if not token:
            return None
        candidate = digest(token)
        match = next((known for known in self.digests if hmac.compare_digest(known, candidate)), None)
        if match is None:
            return None
        return Principal(match[:16], admin=match in self.admin)


Rule = Callable[[str], bool]


def _never(_: str) -> bool:
    return False


@dataclass(frozen=True)
class AccessRules:
    """Which paths need no key, which need an admin key, and where `?authToken=` is taken."""

    public: Rule = _never
    admin_only: Rule = _never
    query_token: Rule = _never


def document_auth(app: FastAPI, *, public: Rule, admin_only: Rule, error_formats: ErrorFormats) -> None:
    """Add the 401 (and, on admin-only paths, 403) that `AuthMiddleware` answers to every operation of the
    app's OpenAPI schema, so the schema matches what callers get. Only for a service that uses keys.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = generate()
        if fresh:  # FastAPI caches the schema it returns: add the responses once
            for path, operations in schema.get("paths", {}).items():
                if public(path):
                    continue
                shape = error_formats.for_path(path)
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    responses.setdefault("401", shape.doc("no API key, or not a valid one (WWW-Authenticate)"))
                    if admin_only(path):
                        responses.setdefault("403", shape.doc("this endpoint needs an admin key"))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


class AuthMiddleware:
    """Refuses unauthenticated requests; puts the caller in `scope["state"]["principal"]`.

    `public(path)` lists what needs no key (liveness, the page shell); `query_token(path)` where
    `?authToken=` is accepted besides the header (SSE: EventSource cannot set headers);
    `admin_only(path)` what needs an admin key.
    """

    def __init__(self, app: ASGIApp, keys: ApiKeys, *, public: Rule, query_token: Rule, admin_only: Rule,
                 error_formats: ErrorFormats | None = None) -> None:
        self.app = app
        self.error_formats = error_formats or ErrorFormats()
        self.keys = keys
        self.public = public
        self.query_token = query_token
        self.admin_only = admin_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.keys.required:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        websocket = scope["type"] == "websocket"
        if not websocket and self.public(path):
            await self.app(scope, receive, send)
            return
        token = self._token(scope, websocket or self.query_token(path))
        principal = self.keys.identify(token)
        if principal is None:
            detail = "a valid API key is required" if token else "missing API key: send Authorization: Bearer <key>"
            await self._refuse(scope, receive, send, 401, "unauthorized", detail)
            return
        if not websocket and self.admin_only(path) and not principal.admin:
            await self._refuse(scope, receive, send, 403, "forbidden", "this endpoint needs an admin key")
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    @staticmethod
    def _token(scope: Scope, allow_query: bool) -> str | None:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credentials.strip():
                    return str(credentials.strip())
        protocols = scope.get("subprotocols") or []
        if len(protocols) >= 2 and protocols[0] == "Authorization":
            return str(protocols[1])
        if allow_query:
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("authToken")
            if values:
                return str(values[0])
        return None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, error: str, detail: str) -> None:
        status, shaped = self.error_formats.body(scope["path"], status, error, detail)
        body = orjson.dumps(shaped)
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json"),
                                              (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="streamchat"'))
        if scope["type"] == "websocket":
            await receive()  # the handshake's websocket.connect
            if "websocket.http.response" in scope.get("extensions", {}):
                start: dict[str, Any] = {"type": "websocket.http.response.start", "status": status, "headers": headers}
                await send(start)
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": error})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
