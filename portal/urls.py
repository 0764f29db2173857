"""Each app's UI urls, the /api/ router, the schema and its docs page."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from allocations.api.exports import (
    AllocationExportView,
    AuditEventExportView,
    ExportJobViewSet,
    UsageView,
    VerificationView,
)
from allocations.api.views import (
    DesktopTemplateViewSet,
    DesktopViewSet,
    MembershipViewSet,
    MeView,
    QuotaRequestViewSet,
    QuotaViewSet,
    TenantViewSet,
)
from audit.api.views import AuditEventViewSet
from inventory.api.views import GPUViewSet, HostViewSet, VGPUProfileViewSet
from portal import metrics, views

router = DefaultRouter()
router.register("hosts", HostViewSet, basename="host")
router.register("gpus", GPUViewSet, basename="gpu")
router.register("vgpu-profiles", VGPUProfileViewSet, basename="vgpu-profile")
router.register("tenants", TenantViewSet, basename="tenant")
router.register("quotas", QuotaViewSet, basename="quota")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("templates", DesktopTemplateViewSet, basename="template")
router.register("desktops", DesktopViewSet, basename="desktop")
router.register("quota-requests", QuotaRequestViewSet, basename="quota-request")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("export-jobs", ExportJobViewSet, basename="export-job")

urlpatterns = [
    path("", include("allocations.urls")),
    path("inventory/", include("inventory.urls")),
    path("audit/", include("audit.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/exports/audit-events/", AuditEventExportView.as_view(), name="export-audit-events"),
    path("api/exports/allocations/", AllocationExportView.as_view(), name="export-allocations"),
    path("api/audit-verifications/", VerificationView.as_view(), name="audit-verify"),
    path("api/usage/", UsageView.as_view(), name="api-usage"),
    path("api/", include(router.urls)),
    path("api/me/", MeView.as_view(), name="me"),
    path("api/auth/token/", obtain_auth_token, name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]

handler404 = "portal.views.not_found"
handler403 = "portal.views.forbidden"
