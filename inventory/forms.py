"""The host pages' forms: input shape and validation only; the services in ``services/hosts.py`` (and
``allocations.services.drain``) decide and write."""

from django import forms

from inventory.models import Host

MAX_REASON = 500
#: The latest a drain may stop its desktops, in minutes (90 days: no desktop lasts longer).
MAX_DRAIN_MINUTES = 90 * 24 * 60


class HostRegisterForm(forms.ModelForm):
    """Name, libvirt URI, console relay and telemetry source: what a test connection reads, and what
    registering saves (the model's own checks: a unique name that can name a task queue)."""

    class Meta:
        model = Host
        fields = ["name", "libvirt_uri", "console_relay", "telemetry_source", "notes"]
        labels = {"libvirt_uri": "libvirt URI", "console_relay": "Console relay (optional)"}
        widgets = {"notes": forms.Textarea(attrs={"rows": 2})}


class HostEditForm(forms.ModelForm):
    class Meta:
        model = Host
        fields = ["console_relay", "telemetry_source", "notes"]
        labels = {"console_relay": "Console relay (host:port; empty = the portal's default)"}
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}


class MaintenanceForm(forms.Form):
    reason = forms.CharField(
        max_length=MAX_REASON, help_text="Shown to the owners of desktops on this host.", strip=True
    )


class DrainForm(forms.Form):
    """A reason for the owners, and when their desktops stop: in so many minutes, or now."""

    reason = forms.CharField(max_length=MAX_REASON, strip=True, help_text="Shown to every owner of a desktop here.")
    minutes = forms.IntegerField(
        min_value=0,
        max_value=MAX_DRAIN_MINUTES,
        initial=30,
        required=False,
        label="Stop running desktops in (minutes)",
        help_text="0 = now. Each desktop stops then, or at its own end if that comes first.",
    )

    def clean(self):
        data = super().clean()
        if self.data.get("end_now"):
            data["minutes"] = 0
        elif data.get("minutes") is None and "minutes" not in self.errors:
            self.add_error("minutes", "Say in how many minutes the desktops stop (0 = now).")
        return data
