"""Export, verification and usage endpoints (they need both the audit log and the allocations)."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from django.db import transaction
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from allocations.services import exports
from allocations.services.usage import GROUPS, usage_report
from audit import services as audit
from audit.exports import neutralise
from audit.models import ExportJob
from portal.api import RolePermission
from portal.errors import Conflict, NotFound, PortalError

EVERYONE = ("platform-admin", "auditor", "tenant-member")
OPERATORS = ("platform-admin", "auditor")


class FormatParamIsOurs(BaseContentNegotiation):
    """``?format=csv`` picks the export's format here, not a DRF renderer: answer JSON (errors) always."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def streaming(export, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(iter(export), content_type=export.content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ExportView(APIView):
    """Stream an export now: ``format`` = csv | json | ndjson, plus the list's filters. The manifest
    (filter, row count, first/last hash, body SHA-256) closes the file."""

    permission_classes = [RolePermission]
    read_roles, write_roles = EVERYONE, ()
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FormatParamIsOurs
    kind = ""

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["csv", "json", "ndjson"])],
        responses={(200, "text/csv"): OpenApiTypes.BINARY},
    )
    def get(self, request):
        fmt = request.query_params.get("format", "csv")
        export = exports.build_export(request.user, self.kind, fmt, dict(request.query_params.items()))
        exports.record_export(request.user, self.kind, fmt, dict(request.query_params.items()))
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        return streaming(export, f"{self.kind}-{stamp}.{fmt}")


class AuditEventExportView(ExportView):
    kind = "audit-events"


class AllocationExportView(ExportView):
    kind = "allocations"


class ExportJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ExportJob
        fields = [
            "id",
            "kind",
            "fmt",
            "filters",
            "status",
            "rows",
            "manifest",
            "error",
            "created_at",
            "finished_at",
            "requested_by_username",
        ]
        read_only_fields = fields


class ExportJobRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=exports.KINDS)
    format = serializers.ChoiceField(choices=["csv", "json", "ndjson"])
    filters = serializers.DictField(child=serializers.CharField(), required=False)


class ExportJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Large exports in the background: ask, then download when done. Each person sees their own jobs."""

    queryset = ExportJob.objects.none()
    serializer_class = ExportJobSerializer
    permission_classes = [RolePermission]
    read_roles, write_roles = EVERYONE, EVERYONE

    def get_queryset(self):
        return ExportJob.objects.filter(requested_by_id=self.request.user.pk)

    @extend_schema(request=ExportJobRequestSerializer, responses={202: ExportJobSerializer})
    def create(self, request):
        form = ExportJobRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job = exports.queue_export(
            request.user,
            form.validated_data["kind"],
            form.validated_data["format"],
            form.validated_data.get("filters", {}),
        )
        return Response(ExportJobSerializer(ExportJob.objects.get(pk=job.pk)).data, status=202)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        job = self.get_object()
        if job.status != ExportJob.Status.DONE:
            raise Conflict(f"This export is {job.status}; download it once it is done.")
        try:
            handle = open(job.path, "rb")
        except FileNotFoundError:
            raise NotFound("The export's file is gone from the server; ask for the export again.") from None
        audit_download(request.user, job)
        return FileResponse(handle, as_attachment=True, filename=job.filename)


def audit_download(user, job: ExportJob) -> None:
    with transaction.atomic():
        audit.record_row("export.downloaded", job, actor=user, after={"rows": job.rows})


class VerificationView(APIView):
    """Walk the audit chain now (audited). 200 with the result; ``ok`` false names the first problem."""

    permission_classes = [RolePermission]
    read_roles = write_roles = OPERATORS

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request):
        return Response(verify_and_record(request.user))


def verify_and_record(user) -> dict:
    result = audit.verify_chain(actor=user, via="verification page/API")
    return {
        "ok": result.ok,
        "events": result.events,
        "head_seq": result.head_seq,
        "checkpoints": result.checkpoints,
        "summary": result.summary(),
        "problems": [
            {"kind": p.kind, "seq": p.seq, "event_id": p.event_id, "detail": p.detail} for p in result.problems
        ],
    }


def parse_period(params) -> tuple[datetime, datetime, str]:
    """``period=YYYY-MM`` (default: this month) or ``start``/``end`` ISO dates → an aware [start, end)."""
    tz = timezone.get_current_timezone()
    try:
        if params.get("start") and params.get("end"):
            start = datetime.fromisoformat(params["start"])
            end = datetime.fromisoformat(params["end"])
            label = f"{params['start']} – {params['end']}"
        else:
            now = timezone.now()
            period = params.get("period") or f"{now.year:04d}-{now.month:02d}"
            year, month = (int(x) for x in period.split("-"))
            start = datetime(year, month, 1)
            end = datetime(year + (month == 12), month % 12 + 1, 1)
            label = period
    except ValueError:
        raise PortalError("period is YYYY-MM, or give start and end as ISO dates (2026-11-01).") from None
    start = start if timezone.is_aware(start) else timezone.make_aware(start, tz)
    end = end if timezone.is_aware(end) else timezone.make_aware(end, tz)
    if end <= start:
        raise PortalError("end must be after start.")
    return start, end, label


def usage_csv(lines, group_by: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([group_by, "desktops", "seconds", "gpu_hours", "framebuffer_gib_hours"])
    for line in lines:
        writer.writerow([neutralise(line.key), line.desktops, line.seconds, line.gpu_hours, line.framebuffer_gib_hours])
    return buffer.getvalue()


class UsageView(APIView):
    """GPU-hours and framebuffer-hours per tenant, user, profile or host for a period (default: this month)."""

    permission_classes = [RolePermission]
    read_roles, write_roles = OPERATORS, ()
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FormatParamIsOurs

    @extend_schema(
        parameters=[
            OpenApiParameter("period", str),
            OpenApiParameter("start", str),
            OpenApiParameter("end", str),
            OpenApiParameter("group_by", str, enum=list(GROUPS)),
            OpenApiParameter("format", str, enum=["json", "csv"]),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        group_by = request.query_params.get("group_by", "tenant")
        if group_by not in GROUPS:
            raise PortalError(f"group_by is one of {', '.join(GROUPS)}.")
        start, end, label = parse_period(request.query_params)
        lines = usage_report(start, end, group_by)
        if request.query_params.get("format") == "csv":
            response = HttpResponse(usage_csv(lines, group_by), content_type="text/csv")
            response["Content-Disposition"] = f'attachment; filename="usage-{group_by}-{label}.csv"'
            return response
        return Response(
            {
                "period": label,
                "start": start,
                "end": end,
                "group_by": group_by,
                "rows": [
                    {
                        "key": x.key,
                        "desktops": x.desktops,
                        "seconds": x.seconds,
                        "gpu_hours": str(x.gpu_hours),
                        "framebuffer_gib_hours": str(x.framebuffer_gib_hours),
                    }
                    for x in lines
                ],
            }
        )
