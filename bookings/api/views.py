"""/api/bookings/: list, read, book (POST) and cancel; rows scoped by ``bookings.access``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from bookings import services
from bookings.access import bookings_visible_to, get_booking_for
from bookings.api.serializers import BookingCreateSerializer, BookingSerializer
from bookings.models import Booking
from tenancy.permissions import RolePermission
from tenancy.roles import ACTORS, EVERYONE


class BookingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Bookings: members book one desktop for themselves, tenant managers and admins for groups."""

    queryset = Booking.objects.none()
    serializer_class = BookingSerializer
    permission_classes = [RolePermission]
    read_roles, write_roles = EVERYONE, ACTORS
    lookup_value_regex = r"\d+"  # anything else is no booking (404), never a 500

    def get_queryset(self):
        scope = self.request.query_params.get("scope", "auto")
        scope = scope if scope in ("mine", "tenant", "auto") else "auto"
        return bookings_visible_to(self.request.user, scope=scope).prefetch_related("people", "occurrences")

    @extend_schema(request=BookingCreateSerializer, responses={201: BookingSerializer})
    def create(self, request):
        data = BookingCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        booking = services.book(
            actor=request.user,
            template_id=v["template"],
            start=v["start"],
            end=v["end"],
            rrule=v["rrule"],
            count=v.get("count"),
            people=v.get("people"),
            tenant_id=v.get("tenant"),
            title=v["title"],
        )
        return Response(BookingSerializer(booking).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=BookingSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        booking = services.cancel_booking(get_booking_for(request.user, int(pk)), actor=request.user)
        return Response(BookingSerializer(booking).data)
