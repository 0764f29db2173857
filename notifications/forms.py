"""The preferences form: two checkboxes per kind the person may be sent (in the portal, by mail)."""

from __future__ import annotations

from django import forms

from notifications.models import NotificationKind


class PreferencesForm(forms.Form):
    def __init__(self, *args, kinds: list[str], current: dict[str, tuple[bool, bool]], **kwargs):
        super().__init__(*args, **kwargs)
        self.kinds = kinds
        for kind in kinds:
            in_portal, by_email = current[kind]
            self.fields[f"{kind}-portal"] = forms.BooleanField(required=False, initial=in_portal)
            self.fields[f"{kind}-email"] = forms.BooleanField(required=False, initial=by_email)

    def rows(self):
        """(label, portal field, email field) per kind, for the template."""
        return [(NotificationKind(k).label, self[f"{k}-portal"], self[f"{k}-email"]) for k in self.kinds]

    def choices(self) -> dict[str, tuple[bool, bool]]:
        data = self.cleaned_data
        return {k: (data[f"{k}-portal"], data[f"{k}-email"]) for k in self.kinds}
