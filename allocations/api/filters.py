import django_filters

from allocations.models import Desktop, DesktopTemplate, Quota
from allocations.services.access import refuse_hidden_filters
from core.errors import PortalError
from core.limits import MAX_ID
from tenancy.models import Membership, Tenant
from tenancy.roles import roles_of, sees_everything


class RefusingFilterSet(django_filters.FilterSet):
    """A filter set that refuses (400, in words) a filter the caller may not use: a filter must not reveal
    what the serializer hides from them (which host runs a desktop, which tenants share a template)."""

    def refusals(self, user) -> dict[str, str]:
        """{filter name: why ``user`` may not use it} for the filters given."""
        return {}

    def is_valid(self):
        valid = super().is_valid()
        user = getattr(self.request, "user", None)
        if user is None:
            return valid
        for name, message in self.refusals(user).items():
            self.form.add_error(name, message)
            valid = False
        return valid

    def given(self, name: str) -> bool:
        return self.data.get(name) not in (None, "")


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


class DesktopTemplateFilterSet(RefusingFilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    profile = django_filters.CharFilter(field_name="profile__name")
    passthrough = django_filters.BooleanFilter(field_name="profile", lookup_expr="isnull")
    tenant = django_filters.NumberFilter(field_name="allowed_tenants", min_value=1, max_value=MAX_ID)

    class Meta:
        model = DesktopTemplate
        fields = ["name", "profile", "passthrough", "is_active", "tenant"]

    def refusals(self, user):
        if not self.given("tenant") or sees_everything(user):
            return {}
        tenant = self.form.cleaned_data.get("tenant") if hasattr(self.form, "cleaned_data") else None
        if tenant is not None and int(tenant) in roles_of(user).tenant_ids:
            return {}
        return {"tenant": "You may filter templates by your own tenants only."}


class DesktopFilterSet(RefusingFilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Desktop._meta.get_field("status").choices)
    profile = django_filters.CharFilter(field_name="profile__name")
    host = django_filters.CharFilter(field_name="host__name")
    owner = django_filters.CharFilter(field_name="owner__username")

    class Meta:
        model = Desktop
        fields = ["status", "tenant", "profile", "host", "owner", "template"]

    def refusals(self, user):
        try:
            refuse_hidden_filters(user, self.data)
        except PortalError as exc:
            return {"host": exc.message}
        return {}
