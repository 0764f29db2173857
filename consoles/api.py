"""POST /api/desktops/<id>/console/: a single-use ticket to the desktop's console, as a websocket URL."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from consoles.services import issue_ticket
from tenancy.permissions import RolePermission
from tenancy.roles import EVERYONE

ConsoleTicketSerializer = inline_serializer(
    "ConsoleTicket",
    {
        "ws_url": serializers.CharField(help_text="Open a WebSocket on it (binary frames: the guest's RFB stream)."),
        "expires_at": serializers.DateTimeField(help_text="Use it before then; it works once."),
    },
)


class DesktopConsoleView(APIView):
    """A ticket to open the console of a running desktop: its owner and platform admins only (others:
    404, as for a desktop that does not exist; 409 when it is not running). The ticket works once,
    within PORTAL_CONSOLE_TICKET_TTL_S, for this user (and this browser session when signed in)."""

    permission_classes = [RolePermission]
    # Who may is decided per desktop by the service (owner or platform admin); auditors and others
    # get the same 404 as for a missing desktop, not a 403 that would confirm it exists.
    read_roles = write_roles = EVERYONE

    @extend_schema(request=None, responses={201: ConsoleTicketSerializer, 404: OpenApiTypes.OBJECT})
    def post(self, request, pk):
        session_key = request.session.session_key if request.auth is None else None
        ticket = issue_ticket(pk, actor=request.user, session_key=session_key)
        scheme = "wss" if request.is_secure() else "ws"
        # The ticket rides in the query string: the ASGI server's access log writes the path only.
        ws_url = f"{scheme}://{request.get_host()}/ws/console/?ticket={ticket.token}"
        return Response({"ws_url": ws_url, "expires_at": ticket.expires_at.isoformat()}, status=201)
