"""The web chat page: ``/`` and its files under ``/chat/``, served by hearth itself.

The page is three static files in ``chat/`` (no build step, nothing from a CDN, so it works offline). It
signs in with an API key, lists conversations through ``/v1/conversations``, talks over ``/ws`` and uploads
with ``POST /v1/files``. Every response carries a strict Content-Security-Policy: scripts and styles only
from hearth's own origin, never inline, so text a model writes can never run as code even if the page
had a bug that put it into the DOM as HTML. The files are read once, when the app is built, and are
revalidated by ``ETag``.

``/`` still answers a client that asks only for JSON (``Accept: application/json``) with hearth's JSON
index, which is also at ``/api``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_log = logging.getLogger("hearth.web")

CHAT_DIR = Path(__file__).parent / "chat"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # always revalidated (cheap: ETag), so an upgrade shows at once
}

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


class ChatPage:
    """The page's routes. ``json_index`` answers ``/`` for clients that accept only JSON."""

    def __init__(self, json_index: Endpoint, directory: Path = CHAT_DIR) -> None:
        self._json_index = json_index
        self._assets: dict[str, _Asset] = {}
        for name, media_type in MEDIA_TYPES.items():
            try:
                body = (directory / name).read_bytes()
            except OSError as exc:
                _log.warning("web chat file %s is missing (%s): the page will not work", name, exc.strerror)
                continue
            self._assets[name] = _Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    def routes(self) -> list[Route]:
        return [Route("/", self.index, methods=["GET", "HEAD"]),
                Route("/chat/{name}", self.asset, methods=["GET", "HEAD"])]

    async def index(self, request: Request) -> Response:
        accept = request.headers.get("accept", "")
        if "application/json" in accept and "text/html" not in accept:
            return await self._json_index(request)
        return self._serve(request, "index.html")

    async def asset(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        if name == "index.html":
            name = ""  # one address for the page
        return self._serve(request, name)

    def _serve(self, request: Request, name: str) -> Response:
        asset = self._assets.get(name)
        if asset is None:
            return Response("Not found.\n", status_code=404, media_type="text/plain; charset=utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})
        headers = {**HEADERS, "ETag": asset.etag, "Vary": "Accept"}
        if asset.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)
