from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from allocations.api.filters import (
    DesktopFilterSet,
    DesktopTemplateFilterSet,
    MembershipFilterSet,
    QuotaFilterSet,
    TenantFilterSet,
)
from allocations.api.serializers import (
    DecisionSerializer,
    DesktopExtendSerializer,
    DesktopRequestSerializer,
    DesktopSerializer,
    DesktopTemplateSerializer,
    FleetOverviewSerializer,
    MembershipSerializer,
    MeSerializer,
    QuotaIncreaseSerializer,
    QuotaSerializer,
    QuotaUsageSerializer,
    TemplatePlacementSerializer,
    TenantSerializer,
    TenantUpdateSerializer,
)
from allocations.models import Desktop, DesktopTemplate, Quota, QuotaRequest
from allocations.placement.capacity import where_could_run
from allocations.services import lifecycle, people, quotas, suspend, templates, tenants
from allocations.services.access import get_desktop_for
from allocations.services.fleet import fleet_problems, fleet_totals
from allocations.services.request import request_desktop, resolve_tenant
from core.api import ServiceWriteMixin
from tenancy.models import Membership, Tenant
from tenancy.permissions import RolePermission
from tenancy.roles import ACTORS, ADMINS, EVERYONE, OPERATORS, roles_of, sees_everything


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

    @extend_schema(responses=QuotaUsageSerializer(many=True))
    @action(detail=True, methods=["get"])
    def usage(self, request, pk=None):
        """Each limit beside what the tenant uses of it now, and its desktop-hours this month."""
        quota = self.get_object()
        lines = quotas.quota_lines(quota.tenant, quota)
        return Response(
            {
                "limits": QuotaUsageSerializer(lines, many=True).data,
                "desktop_hours_this_month": quotas.desktop_hours_this_month(quota.tenant),
            }
        )


class MembershipViewSet(ServiceWriteMixin, viewsets.ModelViewSet):
    """Who holds which role. Admins grant and revoke; auditors read all; users read their own."""

    queryset = Membership.objects.none()  # the real rows come from get_queryset(); this names the model

    serializer_class = MembershipSerializer
    filterset_class = MembershipFilterSet
    permission_classes = [RolePermission]
    read_roles, write_roles = EVERYONE, ADMINS
    # by username or email (a new address gets an account), no duplicate role: services.people
    create_service = staticmethod(people.create_membership_for)
    update_service = staticmethod(people.change_membership)
    delete_service = staticmethod(tenants.delete_membership)

    def get_queryset(self):
        return Membership.objects.visible_to(self.request.user).select_related("user", "tenant")


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

    @extend_schema(request=None, responses=DesktopTemplateSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        """Offer the template for no new desktop, for good; running desktops keep it (409 if already retired)."""
        retired = templates.retire_template(self.get_object(), actor=request.user)
        return Response(self.get_serializer(retired).data)

    @extend_schema(request=None, responses=TemplatePlacementSerializer)
    @action(detail=True, methods=["get"])
    def placement(self, request, pk=None):
        """Where one desktop of the template could run now, host by host, and why not; the policy's
        choice. Operators only (hosts are their business)."""
        if not sees_everything(request.user):
            raise PermissionDenied("Only platform admins and auditors see where templates could run.")
        return Response(where_could_run(self.get_object()).as_dict())


class FleetOverviewView(APIView):
    """The fleet's totals (GPUs by mode, free vGPU instances per profile, boards free, stranded capacity)
    and its problems, as the inventory page shows them."""

    permission_classes = [RolePermission]
    read_roles, write_roles = OPERATORS, ()

    @extend_schema(responses=FleetOverviewSerializer)
    def get(self, request):
        return Response({"totals": fleet_totals(), "problems": fleet_problems()})


class MeView(APIView):
    """Who am I: username, portal roles and tenants."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        roles = roles_of(request.user)
        tenant_rows = Tenant.objects.filter(pk__in=roles.tenant_ids).values("id", "name", "slug")
        return Response({"username": request.user.get_username(), "roles": roles.names, "tenants": list(tenant_rows)})


class DesktopViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Desktops. End users request, extend, reboot and release their own; operators see all."""

    queryset = Desktop.objects.none()
    serializer_class = DesktopSerializer
    filterset_class = DesktopFilterSet
    permission_classes = [RolePermission]
    # Auditors read; writes (request and actions) are for tenant members and platform admins.
    read_roles = EVERYONE
    write_roles = ACTORS
    ordering_fields = ["requested_at", "status", "expires_at"]

    def get_queryset(self):
        return (
            Desktop.objects.visible_to(self.request.user)
            .select_related("template", "profile", "owner", "tenant", "host")
            .prefetch_related("gpus")
        )

    @extend_schema(request=DesktopRequestSerializer, responses={201: DesktopSerializer})
    def create(self, request):
        form = DesktopRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        desktop = request_desktop(
            actor=request.user,
            template_id=form.validated_data["template"],
            duration_hours=form.validated_data["duration_hours"],
            name=form.validated_data.get("name", ""),
            tenant_id=form.validated_data.get("tenant"),
        )
        return Response(DesktopSerializer(desktop, context={"request": request}).data, status=201)

    def _own(self, pk) -> Desktop:
        """Actions act on the caller's own desktops (platform admins: any)."""
        return get_desktop_for(self.request.user, pk, acting=True)

    @extend_schema(request=None, responses=DesktopSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        desktop = lifecycle.release_desktop(self._own(pk), actor=request.user)
        return Response(DesktopSerializer(self.get_queryset().get(pk=desktop.pk), context={"request": request}).data)

    @extend_schema(request=DesktopExtendSerializer, responses=DesktopSerializer)
    @action(detail=True, methods=["post"])
    def extend(self, request, pk=None):
        form = DesktopExtendSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        desktop = lifecycle.extend_desktop(self._own(pk), form.validated_data["hours"], actor=request.user)
        return Response(DesktopSerializer(self.get_queryset().get(pk=desktop.pk), context={"request": request}).data)

    @extend_schema(request=None, responses=DesktopSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Resume a desktop suspended while idle (409 unless it is suspended and its memory saved)."""
        desktop = suspend.request_resume(self._own(pk), actor=request.user)
        return Response(DesktopSerializer(self.get_queryset().get(pk=desktop.pk), context={"request": request}).data)

    @extend_schema(request=None, responses=DesktopSerializer)
    @action(detail=True, methods=["post"])
    def reboot(self, request, pk=None):
        desktop = lifecycle.reboot_desktop(self._own(pk), actor=request.user)
        return Response(DesktopSerializer(self.get_queryset().get(pk=desktop.pk), context={"request": request}).data)


class QuotaRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Quota-increase requests: members ask and may cancel; platform admins approve or reject."""

    queryset = QuotaRequest.objects.none()
    serializer_class = QuotaIncreaseSerializer
    filterset_fields = ["status", "tenant"]
    permission_classes = [RolePermission]
    read_roles = EVERYONE
    write_roles = ACTORS

    def get_queryset(self):
        return QuotaRequest.objects.visible_to(self.request.user).select_related("tenant", "requested_by", "decided_by")

    def create(self, request):
        form = QuotaIncreaseSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        tenant = resolve_tenant(request.user, data.pop("tenant_id", None))
        created = quotas.request_quota_increase(
            actor=request.user, tenant=tenant, changes=data, reason=data.pop("reason", "")
        )
        return Response(QuotaIncreaseSerializer(created).data, status=201)

    def _decide(self, request, service):
        form = DecisionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        decided = service(self.get_object().pk, actor=request.user, reason=form.validated_data.get("reason", ""))
        return Response(QuotaIncreaseSerializer(decided).data)

    @extend_schema(request=DecisionSerializer, responses=QuotaIncreaseSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._decide(request, quotas.approve_quota_request)

    @extend_schema(request=DecisionSerializer, responses=QuotaIncreaseSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide(request, quotas.reject_quota_request)

    @extend_schema(request=None, responses=QuotaIncreaseSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        quota_request = self.get_object()
        return Response(QuotaIncreaseSerializer(quotas.cancel_quota_request(quota_request.pk, actor=request.user)).data)
