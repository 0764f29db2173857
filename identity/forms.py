"""The group mapping form of /identity/ (shape only; ``GroupMapping.clean`` and the service decide)."""

from __future__ import annotations

from django import forms

from identity.models import GroupMapping
from tenancy.models import Tenant


class GroupMappingForm(forms.ModelForm):
    class Meta:
        model = GroupMapping
        fields = ["source", "group", "role", "tenant"]
        help_texts = {"tenant": "For the tenant member role only; platform roles have none."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tenant"].queryset = Tenant.objects.filter(is_active=True).order_by("name")
