"""Desktop template pages: the list, a template's page (where it could run now and why not), and the
platform admins' create, edit and retire. Writes go through ``services.templates`` (validated, audited)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from allocations.choices import IdleAction
from allocations.models import DesktopTemplate
from allocations.placement.capacity import where_could_run
from allocations.services import templates
from core.errors import PortalError
from core.limits import MAX_DESKTOP_HOURS, MAX_MEMORY_MIB, MAX_VCPUS
from inventory.choices import ProfileSeries
from inventory.models import VGPUProfile
from tenancy.models import Tenant
from tenancy.permissions import role_required
from tenancy.roles import ADMINS, OPERATORS

KINDS = [
    ("vgpu", "A named vGPU profile"),
    ("vgpu-share", "A share of a board (the scheduler picks board and profile)"),
    ("whole", "Whole GPUs (passthrough)"),
    ("none", "No GPU"),
]


class TemplateForm(forms.Form):
    """A template as people think of it (a kind, memory in GiB); ``data()`` gives the model's fields."""

    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    kind = forms.ChoiceField(choices=KINDS, widget=forms.RadioSelect, initial="vgpu")
    profile = forms.ModelChoiceField(
        queryset=VGPUProfile.objects.order_by("board", "framebuffer_mib", "name"),
        required=False,
        to_field_name="name",
        help_text="For a named profile.",
    )
    share_percent = forms.DecimalField(
        required=False,
        min_value=0.1,
        max_value=99.9,
        decimal_places=1,
        label="Share of a board (%)",
        help_text="For a share: at least this much of a board, e.g. 25 for a quarter.",
    )
    profile_series = forms.ChoiceField(choices=ProfileSeries.choices, initial=ProfileSeries.Q, label="Series")
    gpu_models = forms.CharField(
        required=False, label="Board models", help_text="For a share or whole GPUs: e.g. A40, L40S (empty = any)."
    )
    gpu_count = forms.IntegerField(min_value=1, max_value=16, required=False, initial=1, label="Whole GPUs")
    vcpus = forms.IntegerField(min_value=1, max_value=MAX_VCPUS, label="vCPUs")
    memory_gib = forms.DecimalField(
        min_value=0.25, max_value=MAX_MEMORY_MIB / 1024, decimal_places=2, label="Memory (GiB)"
    )
    disk_image = forms.CharField(max_length=255, help_text="Base image path or volume name on the host.")
    max_duration_hours = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_DESKTOP_HOURS,
        label="Maximum duration (hours)",
        help_text="Empty: each tenant's quota decides.",
    )
    allowed_tenants = forms.ModelMultipleChoiceField(
        queryset=Tenant.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Offered to",
    )
    is_active = forms.BooleanField(required=False, initial=True, label="Offered now (untick to pause)")
    idle_limit_minutes = forms.IntegerField(
        required=False,
        min_value=5,
        max_value=7 * 24 * 60,
        label="Idle limit (minutes)",
        help_text="A running desktop whose GPU stayed below the threshold and whose console had no input this "
        "long is warned, then given back after the grace period. Empty: never.",
    )
    idle_sm_threshold_pct = forms.IntegerField(
        required=False, min_value=1, max_value=100, initial=5, label="Idle below SM utilization (%)"
    )
    idle_action = forms.ChoiceField(
        required=False, choices=IdleAction.choices, initial=IdleAction.SUSPEND, label="Then"
    )
    suspend_keeps_capacity = forms.BooleanField(
        required=False,
        initial=True,
        label="A suspended desktop keeps its vGPU (untick: idle desktops are released instead)",
        help_text="Its saved memory can only be restored on the same host, so a suspend that gave the vGPU "
        "back could not promise to resume: without the claim the desktop is released.",
    )

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        if kind == "vgpu" and not data.get("profile"):
            self.add_error("profile", "Choose the vGPU profile.")
        if kind == "vgpu-share" and not data.get("share_percent"):
            self.add_error("share_percent", "Say how much of a board, in percent.")
        if kind == "whole" and not data.get("gpu_count"):
            self.add_error("gpu_count", "Say how many whole GPUs.")
        models = [m.strip() for m in (data.get("gpu_models") or "").split(",") if m.strip()]
        if kind in ("vgpu", "none") and models:
            self.add_error("gpu_models", "Only a share or whole GPUs name board models.")
        data["gpu_model_list"] = models
        return data

    def data_for_model(self) -> dict:
        d, kind = self.cleaned_data, self.cleaned_data["kind"]
        return {
            "name": d["name"],
            "description": d["description"],
            "profile": d["profile"] if kind == "vgpu" else None,
            "gpu_share_milli": int(d["share_percent"] * 10) if kind == "vgpu-share" else None,
            "profile_series": d["profile_series"],
            "gpu_models": d["gpu_model_list"] if kind in ("vgpu-share", "whole") else [],
            "gpu_count": {"vgpu": 1, "vgpu-share": 1, "none": 0}.get(kind, d.get("gpu_count") or 1),
            "vcpus": d["vcpus"],
            "memory_mib": int(d["memory_gib"] * 1024),
            "disk_image": d["disk_image"],
            "max_duration_hours": d["max_duration_hours"],
            "allowed_tenants": list(d["allowed_tenants"]),
            "is_active": d["is_active"],
            "idle_limit_minutes": d["idle_limit_minutes"],
            "idle_sm_threshold_pct": d["idle_sm_threshold_pct"] or 5,
            "idle_action": d["idle_action"] or IdleAction.SUSPEND,
            "suspend_keeps_capacity": d["suspend_keeps_capacity"],
        }

    @classmethod
    def initial_for(cls, t: DesktopTemplate) -> dict:
        return {
            "name": t.name,
            "description": t.description,
            "kind": t.kind,
            "profile": t.profile.name if t.profile_id else None,
            "share_percent": t.gpu_share_milli / 10 if t.gpu_share_milli else None,
            "profile_series": t.profile_series,
            "gpu_models": ", ".join(t.gpu_models),
            "gpu_count": t.gpu_count or 1,
            "vcpus": t.vcpus,
            "memory_gib": round(t.memory_mib / 1024, 2),
            "disk_image": t.disk_image,
            "max_duration_hours": t.max_duration_hours,
            "allowed_tenants": list(t.allowed_tenants.all()),
            "is_active": t.is_active,
            "idle_limit_minutes": t.idle_limit_minutes,
            "idle_sm_threshold_pct": t.idle_sm_threshold_pct,
            "idle_action": t.idle_action,
            "suspend_keeps_capacity": t.suspend_keeps_capacity,
        }


def _refusal(form: TemplateForm, exc: Exception) -> None:
    """The service's refusal on the form, field by field where it names one; the input stays."""
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        for name, errors in exc.message_dict.items():
            target = {"gpu_share_milli": "share_percent", "memory_mib": "memory_gib"}.get(name, name)
            form.add_error(target if target in form.fields else None, " ".join(errors))
    else:
        form.add_error(None, getattr(exc, "message", None) or " ".join(getattr(exc, "messages", [str(exc)])))


@role_required(OPERATORS)
def template_list(request):
    rows = (
        DesktopTemplate.objects.select_related("profile")
        .prefetch_related("allowed_tenants")
        .order_by("retired_at", "name")
    )
    return render(request, "allocations/templates.html", {"templates": rows})


@role_required(OPERATORS)
def template_detail(request, pk):
    template = get_object_or_404(
        DesktopTemplate.objects.select_related("profile").prefetch_related("allowed_tenants"), pk=pk
    )
    running = template.desktops.filter(holds_capacity=True).count()
    return render(
        request,
        "allocations/template_detail.html",
        {"template": template, "placement": where_could_run(template), "running": running},
    )


def _save(request, form: TemplateForm, template: DesktopTemplate | None):
    if request.method != "POST" or not form.is_valid():
        return None
    try:
        if template is None:
            saved = templates.create_template(form.data_for_model(), actor=request.user)
        else:
            saved = templates.update_template(template, form.data_for_model(), actor=request.user)
    except (PortalError, ValidationError) as exc:
        _refusal(form, exc)
        return None
    messages.success(request, f"Template {saved.name} saved.")
    return redirect("template-page", pk=saved.pk)


@role_required(ADMINS)
def template_new(request):
    form = TemplateForm(request.POST or None)
    done = _save(request, form, None)
    return done or render(request, "allocations/template_form.html", {"form": form, "template": None})


@role_required(ADMINS)
def template_edit(request, pk):
    template = get_object_or_404(DesktopTemplate, pk=pk)
    if template.retired_at:
        messages.error(request, templates.retired_refusal(template))
        return redirect("template-page", pk=template.pk)
    form = TemplateForm(request.POST or None, initial=TemplateForm.initial_for(template))
    done = _save(request, form, template)
    return done or render(request, "allocations/template_form.html", {"form": form, "template": template})


@require_POST
@role_required(ADMINS)
def template_retire(request, pk):
    template = get_object_or_404(DesktopTemplate, pk=pk)
    try:
        templates.retire_template(template, actor=request.user)
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{template.name} is retired: no new desktops; running ones keep it.")
    return redirect("template-page", pk=template.pk)
