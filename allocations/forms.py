from django import forms

from allocations.models import DesktopTemplate
from core.limits import (
    MAX_DESKTOP_HOURS,
    MAX_DESKTOP_HOURS_PER_MONTH,
    MAX_DESKTOPS,
    MAX_FRAMEBUFFER_MIB,
    MAX_REASON_CHARS,
)


class DesktopRequestForm(forms.Form):
    template = forms.ModelChoiceField(queryset=DesktopTemplate.objects.none(), empty_label=None)
    duration_hours = forms.IntegerField(min_value=1, max_value=MAX_DESKTOP_HOURS, initial=2, label="Duration (hours)")
    name = forms.CharField(max_length=100, required=False, label="Name (optional)")

    def __init__(self, *args, tenant=None, **kwargs):
        super().__init__(*args, **kwargs)
        if tenant is not None:
            self.fields["template"].queryset = tenant.templates.filter(is_active=True).order_by("name")
            self.fields["duration_hours"].max_value = tenant.quota.max_desktop_hours
            self.fields["duration_hours"].widget.attrs["max"] = tenant.quota.max_desktop_hours


class ExtendForm(forms.Form):
    hours = forms.IntegerField(min_value=1, max_value=MAX_DESKTOP_HOURS, initial=1)


class QuotaIncreaseForm(forms.Form):
    """Mirrors the limits ``quotas.request_quota_increase`` enforces (core.limits), so the page says so early."""

    max_desktops = forms.IntegerField(min_value=1, max_value=MAX_DESKTOPS, required=False, label="Concurrent desktops")
    max_framebuffer_mib = forms.IntegerField(
        min_value=1, max_value=MAX_FRAMEBUFFER_MIB, required=False, label="Total framebuffer (MiB)"
    )
    max_desktop_hours = forms.IntegerField(
        min_value=1, max_value=MAX_DESKTOP_HOURS, required=False, label="Longest desktop (hours)"
    )
    max_desktop_hours_per_month = forms.IntegerField(
        min_value=1, max_value=MAX_DESKTOP_HOURS_PER_MONTH, required=False, label="Desktop-hours a month"
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=MAX_REASON_CHARS)


class DecisionForm(forms.Form):
    reason = forms.CharField(required=False, max_length=MAX_REASON_CHARS)
