"""The forms of the tenant, people and quota pages. They shape input and mirror the services' bounds
(core.limits) so the browser says so early; the services check again and decide."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import forms

from core.limits import MAX_DESKTOP_HOURS, MAX_DESKTOP_HOURS_PER_MONTH, MAX_DESKTOPS, MAX_FRAMEBUFFER_MIB
from inventory.models import VGPUProfile
from tenancy.models import Tenant, slug_validator
from tenancy.roles import Role

MAX_FRAMEBUFFER_GIB = MAX_FRAMEBUFFER_MIB // 1024


def gib_to_mib(value: Decimal) -> int:
    return int((value * 1024).to_integral_value(ROUND_HALF_UP))


class QuotaFieldsForm(forms.Form):
    """The tenant-wide limits; framebuffer in GiB (one decimal), stored in MiB."""

    max_desktops = forms.IntegerField(min_value=0, max_value=MAX_DESKTOPS, label="Desktops at once")
    max_framebuffer_gib = forms.DecimalField(
        min_value=0, max_value=MAX_FRAMEBUFFER_GIB, max_digits=12, decimal_places=1, label="Framebuffer (GiB)"
    )
    max_desktop_hours = forms.IntegerField(min_value=1, max_value=MAX_DESKTOP_HOURS, label="Longest desktop (hours)")
    max_desktop_hours_per_month = forms.IntegerField(
        min_value=1,
        max_value=MAX_DESKTOP_HOURS_PER_MONTH,
        required=False,
        label="Desktop-hours a month",
        help_text="Calendar month, UTC; empty: no monthly cap.",
    )

    def quota_changes(self) -> dict:
        data = self.cleaned_data
        return {
            "max_desktops": data["max_desktops"],
            "max_framebuffer_mib": gib_to_mib(data["max_framebuffer_gib"]),
            "max_desktop_hours": data["max_desktop_hours"],
            "max_desktop_hours_per_month": data.get("max_desktop_hours_per_month"),
        }


class TenantForm(QuotaFieldsForm):
    name = forms.CharField(max_length=100)
    slug = forms.CharField(max_length=50, validators=[slug_validator], help_text="Lower-case letters, digits, hyphens.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    field_order = [
        "name",
        "slug",
        "description",
        "max_desktops",
        "max_framebuffer_gib",
        "max_desktop_hours",
        "max_desktop_hours_per_month",
    ]

    def tenant_data(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "slug": data["slug"],
            "description": data["description"],
            "quota": self.quota_changes(),
        }


class QuotaForm(QuotaFieldsForm):
    """The quota page: the tenant-wide limits, one field per existing per-profile limit (``limit_<id>``,
    blank removes it) and one new limit (``new_profile`` with ``new_limit``)."""

    new_profile = forms.ModelChoiceField(
        queryset=VGPUProfile.objects.none(), required=False, label="Add a limit for profile"
    )
    new_limit = forms.IntegerField(min_value=0, max_value=MAX_DESKTOPS, required=False, label="Desktops of it")

    def __init__(self, *args, quota, **kwargs):
        self.limits = list(quota.profile_limits.select_related("profile"))
        initial = {
            "max_desktops": quota.max_desktops,
            "max_framebuffer_gib": round(Decimal(quota.max_framebuffer_mib) / 1024, 1),
            "max_desktop_hours": quota.max_desktop_hours,
            "max_desktop_hours_per_month": quota.max_desktop_hours_per_month,
        }
        initial.update({f"limit_{pq.profile_id}": pq.max_instances for pq in self.limits})
        super().__init__(*args, initial=initial, **kwargs)
        for pq in self.limits:
            self.fields[f"limit_{pq.profile_id}"] = forms.IntegerField(
                min_value=0, max_value=MAX_DESKTOPS, required=False, label=pq.profile.name
            )
        self.fields["new_profile"].queryset = VGPUProfile.objects.exclude(
            pk__in=[pq.profile_id for pq in self.limits]
        ).order_by("name")

    def limit_fields(self):
        return [self[f"limit_{pq.profile_id}"] for pq in self.limits]

    def clean(self):
        data = super().clean()
        if data.get("new_profile") is not None and data.get("new_limit") is None:
            self.add_error("new_limit", "Say how many desktops of this profile the tenant may hold.")
        return data

    def quota_changes(self) -> dict:
        changes = super().quota_changes()
        limits = [
            {"profile": pq.profile, "max_instances": self.cleaned_data[f"limit_{pq.profile_id}"]}
            for pq in self.limits
            if self.cleaned_data.get(f"limit_{pq.profile_id}") is not None
        ]
        if self.cleaned_data.get("new_profile") is not None:
            limits.append(
                {"profile": self.cleaned_data["new_profile"], "max_instances": self.cleaned_data["new_limit"]}
            )
        changes["profile_limits"] = limits
        return changes


class MemberForm(forms.Form):
    """Add someone by username or email, with a role (tenant members: in a tenant)."""

    user = forms.CharField(max_length=254, label="Username or email")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.TENANT_MEMBER)
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.order_by("name"), required=False, label="Tenant")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.order_by("name"), required=False)
