"""Each app's UI urls, the /api/ router, the schema and its docs page."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from allocations.api.drain import HostDrainView  # issue 16: force-drain a host
from allocations.api.people import PersonViewSet  # issue 16: people
from allocations.api.views import (
    DesktopTemplateViewSet,
    DesktopViewSet,
    FleetOverviewView,
    MembershipViewSet,
    MeView,
    QuotaRequestViewSet,
    QuotaViewSet,
    TenantViewSet,
)
from allocations.api.whatif import CapacityWhatIfView  # issue 16: capacity what-if
from bookings.api.views import BookingViewSet  # issue 18: bookings
from consoles.api import DesktopConsoleView
from core import views
from core.middleware import allow_inline_scripts
from inventory.api.views import GPUViewSet, HostViewSet, VGPUProfileViewSet
from reports import metrics
from reports.api import (
    AllocationExportView,
    AuditEventExportView,
    AuditEventViewSet,
    ExportJobViewSet,
    UsageView,
    VerificationView,
)
from reports.urls import audit_patterns
from tenancy.api import APITokenViewSet, ObtainTokenView

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
router.register("tokens", APITokenViewSet, basename="token")
router.register("people", PersonViewSet, basename="person")  # issue 16: people for the admins' pages
router.register("bookings", BookingViewSet, basename="booking")  # issue 18: bookings

urlpatterns = [
    path("", include("consoles.urls")),  # before allocations': its desktops/<pk>/<action>/ would take console/
    path("", include("allocations.urls")),
    path("", include("allocations.whatif_urls")),  # issue 16: capacity what-if page
    path("", include("allocations.tenant_urls")),  # issue 16: tenants, people and quotas
    path("", include("reports.urls")),
    path("bookings/", include("bookings.urls")),  # issue 18: calendars, booking form, feed
    path("inventory/", include("allocations.host_pages")),  # issue 16: a host's force-drain page
    path("inventory/", include("inventory.urls")),
    path("", include("tenancy.urls")),  # /account/tokens/
    path("notifications/", include("notifications.urls")),  # issue 17: notifications, mail queue, invitations
    path("audit/", include(audit_patterns)),
    # Sign-in and sign-out; password reset and change, sign out everywhere: tenancy.urls (issue 17).
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("identity/", include("identity.urls")),  # issue 17: group mappings (platform admins)
    path("oidc/", include("identity.oidc_urls")),  # issue 17: OpenID Connect sign-in and its callback
    path("favicon.ico", lambda request: redirect(static("favicon.svg")), name="favicon"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/exports/audit-events/", AuditEventExportView.as_view(), name="export-audit-events"),
    path("api/exports/allocations/", AllocationExportView.as_view(), name="export-allocations"),
    path("api/audit-verifications/", VerificationView.as_view(), name="audit-verify"),
    path("api/usage/", UsageView.as_view(), name="api-usage"),
    path("api/capacity/what-if/", CapacityWhatIfView.as_view(), name="api-capacity-whatif"),  # issue 16
    path("api/desktops/<int:pk>/console/", DesktopConsoleView.as_view(), name="api-desktop-console"),
    path("api/hosts/<int:pk>/drain/", HostDrainView.as_view(), name="api-host-drain"),  # issue 16: force-drain
    path("api/fleet/overview/", FleetOverviewView.as_view(), name="api-fleet-overview"),  # issue 16: fleet overview
    path("api/", include(router.urls)),
    path("api/me/", MeView.as_view(), name="me"),
    # Name and password in, a new API token out (hashed at rest; throttled and audited: tenancy.signin).
    path("api/auth/token/", ObtainTokenView.as_view(), name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's start-up script as a file of its own (the Content-Security-Policy allows no inline
    # script); ReDoc can only inline it, so its page alone allows that (core.middleware).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", allow_inline_scripts(SpectacularRedocView.as_view(url_name="schema")), name="api-redoc"),
]

handler404 = "core.views.not_found"
handler403 = "core.views.forbidden"
handler500 = "core.views.server_error"  # JSON under /api/; 503 in words while the database is away
