"""People (user accounts) for the platform admins' pages: operators read them with their roles; platform
admins switch an account off and on (``PATCH {"is_active": false}``: ``services.people.set_user_active``)."""

from __future__ import annotations

import django_filters
from django.contrib.auth import get_user_model
from django.db.models import Q
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.response import Response

from allocations.services import people
from tenancy.permissions import RolePermission
from tenancy.roles import ADMINS, OPERATORS


class PersonMembershipSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.CharField()
    tenant = serializers.IntegerField(source="tenant_id", allow_null=True)
    tenant_name = serializers.CharField(source="tenant.name", default=None)


class PersonSerializer(serializers.ModelSerializer):
    memberships = PersonMembershipSerializer(many=True, read_only=True)
    has_password = serializers.SerializerMethodField()

    class Meta:
        model = get_user_model()
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "is_active",
            "has_password",
            "last_login",
            "date_joined",
            "memberships",
        ]
        read_only_fields = fields

    def get_has_password(self, obj) -> bool:
        """False for an account made by adding someone new: an admin sets its password (changepassword)."""
        return obj.has_usable_password()


class PersonUpdateSerializer(serializers.Serializer):
    is_active = serializers.BooleanField()


class PersonFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", max_length=150, label="Username or email contains")
    is_active = django_filters.BooleanFilter()

    def search(self, queryset, name, value):
        return queryset.filter(Q(username__icontains=value) | Q(email__icontains=value))


class PersonViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """People and their roles. Platform admins and auditors read; platform admins deactivate and
    reactivate (which signs the person out everywhere)."""

    queryset = get_user_model().objects.none()
    serializer_class = PersonSerializer
    filterset_class = PersonFilterSet
    permission_classes = [RolePermission]
    read_roles, write_roles = OPERATORS, ADMINS
    ordering_fields = ["username", "date_joined", "last_login"]

    def get_queryset(self):
        return get_user_model().objects.prefetch_related("memberships__tenant").order_by("username")

    @extend_schema(request=PersonUpdateSerializer, responses=PersonSerializer)
    def update(self, request, *args, **kwargs):
        person = self.get_object()
        form = PersonUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        people.set_user_active(person, form.validated_data["is_active"], actor=request.user)
        return Response(PersonSerializer(self.get_queryset().get(pk=person.pk)).data)

    @extend_schema(request=PersonUpdateSerializer, responses=PersonSerializer)
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, **kwargs)
