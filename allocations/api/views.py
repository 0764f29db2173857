from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from allocations.api.filters import DesktopTemplateFilterSet, MembershipFilterSet, QuotaFilterSet, TenantFilterSet
from allocations.api.serializers import (
    DesktopTemplateSerializer,
    MembershipSerializer,
    MeSerializer,
    QuotaSerializer,
    TenantSerializer,
    TenantUpdateSerializer,
)
from allocations.choices import Role
from allocations.models import DesktopTemplate, Membership, Quota, Tenant
from allocations.services import templates, tenants
from allocations.services.access import roles_of
from portal.api import RolePermission, ServiceWriteMixin

ADMINS = (Role.PLATFORM_ADMIN,)
EVERYONE = (Role.PLATFORM_ADMIN, Role.AUDITOR, Role.TENANT_MEMBER)


class TenantViewSet(ServiceWriteMixin, viewsets.ModelViewSet):
    """Tenants. End users see their own; admins and auditors see all; admins change them."""

    queryset = Tenant.objects.none()  # the real rows come from get_queryset(); this names the model

    serializer_class = TenantSerializer
    filterset_class = TenantFilterSet
    permission_classes = [RolePermission]
    read_roles, write_roles = EVERYONE, ADMINS
    ordering_fields = ["name", "created_at"]
    create_service = staticmethod(tenants.create_tenant)
    update_service = staticmethod(tenants.update_tenant)
    delete_service = staticmethod(tenants.delete_tenant)

    def get_queryset(self):
        return Tenant.objects.visible_to(self.request.user).select_related("quota")

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return TenantUpdateSerializer
        return TenantSerializer


class QuotaViewSet(
    ServiceWriteMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Tenant quotas. Created with their tenant; admins change the limits."""

    queryset = Quota.objects.none()  # the real rows come from get_queryset(); this names the model

    serializer_class = QuotaSerializer
    filterset_class = QuotaFilterSet
    permission_classes = [RolePermission]
    read_roles, write_roles = EVERYONE, ADMINS
    update_service = staticmethod(tenants.update_quota)

    def get_queryset(self):
        visible = Tenant.objects.visible_to(self.request.user)
        return (
            Quota.objects.filter(tenant__in=visible)
            .select_related("tenant")
            .prefetch_related("profile_limits__profile")
        )


class MembershipViewSet(ServiceWriteMixin, viewsets.ModelViewSet):
    """Who holds which role. Admins grant and revoke; auditors read all; users read their own."""

    queryset = Membership.objects.none()  # the real rows come from get_queryset(); this names the model

    serializer_class = MembershipSerializer
    filterset_class = MembershipFilterSet
    permission_classes = [RolePermission]
    read_roles, write_roles = EVERYONE, ADMINS
    create_service = staticmethod(tenants.create_membership)
    update_service = staticmethod(tenants.update_membership)
    delete_service = staticmethod(tenants.delete_membership)

    def get_queryset(self):
        rows = Membership.objects.select_related("user", "tenant")
        roles = roles_of(self.request.user)
        if roles.platform_admin or roles.auditor:
            return rows
        return rows.filter(user=self.request.user)


class DesktopTemplateViewSet(ServiceWriteMixin, viewsets.ModelViewSet):
    """Desktop templates. End users see the active ones offered to their tenants."""

    queryset = DesktopTemplate.objects.none()  # the real rows come from get_queryset(); this names the model

    serializer_class = DesktopTemplateSerializer
    filterset_class = DesktopTemplateFilterSet
    permission_classes = [RolePermission]
    read_roles, write_roles = EVERYONE, ADMINS
    ordering_fields = ["name", "created_at"]
    create_service = staticmethod(templates.create_template)
    update_service = staticmethod(templates.update_template)
    delete_service = staticmethod(templates.delete_template)

    def get_queryset(self):
        return (
            DesktopTemplate.objects.visible_to(self.request.user)
            .select_related("profile")
            .prefetch_related("allowed_tenants")
        )


class MeView(APIView):
    """Who am I: username, portal roles and tenants."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        roles = roles_of(request.user)
        tenant_rows = Tenant.objects.filter(pk__in=roles.tenant_ids).values("id", "name", "slug")
        return Response({"username": request.user.get_username(), "roles": roles.names, "tenants": list(tenant_rows)})
