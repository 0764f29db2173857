"""Bookings' API shapes: read (a booking and its windows) and write (what ``services.book`` takes)."""

from __future__ import annotations

from rest_framework import serializers

from bookings.models import Booking, Occurrence


class OccurrenceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Occurrence
        fields = ["id", "start", "end", "state", "note"]


class BookingSerializer(serializers.ModelSerializer):
    template = serializers.CharField(source="template.name")
    tenant = serializers.CharField(source="tenant.name")
    owner = serializers.CharField(source="owner.username")
    people = serializers.SlugRelatedField(many=True, read_only=True, slug_field="username")
    occurrences = OccurrenceSerializer(many=True, read_only=True)

    class Meta:
        model = Booking
        fields = [
            "id", "title", "tenant", "template", "owner", "people", "count",
            "start", "end", "rrule", "state", "created_at", "occurrences",
        ]  # fmt: skip


class BookingCreateSerializer(serializers.Serializer):
    template = serializers.IntegerField(help_text="Desktop template id.")
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    rrule = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    count = serializers.IntegerField(required=False, min_value=1)
    people = serializers.ListField(child=serializers.IntegerField(), required=False, help_text="User ids.")
    tenant = serializers.IntegerField(required=False)
    title = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
