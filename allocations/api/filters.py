import django_filters

from allocations.models import Desktop, DesktopTemplate, Quota
from core.limits import MAX_ID
from tenancy.models import Membership, Tenant


class TenantFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Tenant
        fields = ["name", "slug", "is_active"]


class QuotaFilterSet(django_filters.FilterSet):
    tenant_slug = django_filters.CharFilter(field_name="tenant__slug")

    class Meta:
        model = Quota
        fields = ["tenant", "tenant_slug"]


class MembershipFilterSet(django_filters.FilterSet):
    username = django_filters.CharFilter(field_name="user__username")

    class Meta:
        model = Membership
        fields = ["tenant", "role", "username"]


class DesktopTemplateFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    profile = django_filters.CharFilter(field_name="profile__name")
    passthrough = django_filters.BooleanFilter(field_name="profile", lookup_expr="isnull")
    tenant = django_filters.NumberFilter(field_name="allowed_tenants", min_value=1, max_value=MAX_ID)

    class Meta:
        model = DesktopTemplate
        fields = ["name", "profile", "passthrough", "is_active", "tenant"]


class DesktopFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Desktop._meta.get_field("status").choices)
    profile = django_filters.CharFilter(field_name="profile__name")
    host = django_filters.CharFilter(field_name="host__name")
    owner = django_filters.CharFilter(field_name="owner__username")

    class Meta:
        model = Desktop
        fields = ["status", "tenant", "profile", "host", "owner", "template"]
