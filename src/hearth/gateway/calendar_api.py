"""``GET /v1/calendar.ics``: a user's hearth calendar as an iCalendar file, for any calendar app.

Authenticated with the user's API key like the rest of ``/v1``; the file is always an attachment, so
it is downloaded (or subscribed to) rather than rendered. This module does not import the skills layer:
the composition root hands it anything that can export a user's events.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.errors import HearthError
from hearth.gateway.base import Authenticator, bearer_token

MEDIA_TYPE = "text/calendar; charset=utf-8"


class CalendarExport(Protocol):
    """Something that can write a user's events as an ``.ics`` file."""

    async def export_ics(self, user_id: int) -> bytes: ...


class CalendarApi:
    """The ``/v1/calendar.ics`` route over a ``CalendarExport``."""

    def __init__(self, calendar: CalendarExport, auth: Authenticator) -> None:
        self._calendar = calendar
        self._auth = auth

    def routes(self) -> list[Route]:
        return [Route("/v1/calendar.ics", self.export, methods=["GET"])]

    async def export(self, request: Request) -> Response:
        try:
            actor = await self._auth.authenticate(bearer_token(request.headers.get("authorization")), channel="api")
            body = await self._calendar.export_ics(actor.user_id)
        except HearthError as exc:
            status = 401 if exc.code == "unauthenticated" else 500
            return JSONResponse({"error": {"code": exc.code, "message": str(exc)}}, status_code=status)
        return Response(body, media_type=MEDIA_TYPE, headers={
            "Content-Disposition": 'attachment; filename="calendar.ics"', "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store"})
