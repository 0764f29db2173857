"""The reports API: the audit log, exports (streamed or background jobs), verification and usage."""

from __future__ import annotations

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from audit.exports import MANIFEST_SUFFIX
from audit.models import AuditEvent
from core.api import PortalPagination
from core.errors import Conflict, NotFound, PortalError
from reports import exports
from reports.filters import AuditEventFilterSet
from reports.keyset import keyset_page, read_cursor, wants_keyset
from reports.models import ExportJob
from reports.serializers import AuditEventSerializer, ExportJobRequestSerializer, ExportJobSerializer
from reports.streaming import AsyncChunks, body_for, file_chunks, served_by_asgi
from reports.usage import GROUPS, parse_period, usage_csv, usage_report, usage_series
from reports.verification import verify_and_record
from tenancy.permissions import RolePermission
from tenancy.roles import EVERYONE, NOBODY, OPERATORS


class FormatParamIsOurs(BaseContentNegotiation):
    """``?format=csv`` picks the export's format here, not a DRF renderer: answer JSON (errors) always."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def streaming(chunks, content_type: str, filename: str) -> StreamingHttpResponse:
    """``chunks``: sync (WSGI) or async (ASGI, ``reports.streaming.body_for``)."""
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def manifest_url(job: ExportJob) -> str:
    return reverse("export-job-download", args=[job.pk]) + "?part=manifest"


class ExportView(APIView):
    """Stream an export now: ``format`` = csv | json | ndjson, plus the list's filters. The manifest
    (filter, row count, first/last hash, body SHA-256) is kept beside it once the last byte has gone:
    the ``X-Export-Manifest`` header (and ``Link: <…>; rel="describedby"``) says where
    (``/api/export-jobs/<id>/download/?part=manifest``), and "My exports" lists it. A CSV is pure data;
    JSON and NDJSON also close with their manifest."""

    permission_classes = [RolePermission]
    read_roles, write_roles = EVERYONE, NOBODY
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FormatParamIsOurs
    kind = ""
    #: Under ASGI, stream an async iterator (bytes as they are read). False hands Django the sync one,
    #: which it reads whole before the first byte under ASGI: only bench/export_asgi.py sets it, to compare.
    async_under_asgi = True

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=["csv", "json", "ndjson"]),
            OpenApiParameter("bom", bool, description="CSV only: start with a UTF-8 byte order mark (spreadsheets)."),
        ],
        responses={(200, "text/csv"): OpenApiTypes.BINARY},
    )
    def get(self, request):
        fmt = request.query_params.get("format", "csv")
        params = dict(request.query_params.items())
        export = exports.build_export(request.user, self.kind, fmt, params)
        exports.record_export(request.user, self.kind, fmt, params)
        job = exports.record_streamed(request.user, self.kind, fmt, params)
        # named as its job, so the manifest saved beside it is <file>.manifest.json, as verify_export looks
        chunks = exports.stream_recording_manifest(export, job, actor=request.user)
        body = body_for(request, chunks) if self.async_under_asgi else chunks
        response = streaming(body, export.content_type, job.filename)
        response["X-Export-Manifest"] = manifest_url(job)
        response["Link"] = f'<{manifest_url(job)}>; rel="describedby"'
        return response


class AuditEventExportView(ExportView):
    kind = "audit-events"


class AllocationExportView(ExportView):
    kind = "allocations"


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

    @extend_schema(
        parameters=[OpenApiParameter("part", str, enum=["file", "manifest"])],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        """The export's file, or with ``?part=manifest`` its manifest (``<file>.manifest.json``): what
        ``manage.py verify_export`` checks the file against offline."""
        job = self.get_object()
        part = request.query_params.get("part", "file")
        if part not in ("file", "manifest"):
            raise PortalError("part is file or manifest.")
        if job.status != ExportJob.Status.DONE:
            raise Conflict(f"This export is {job.status}; download it once it is done.")
        if part == "manifest":
            response = HttpResponse(exports.manifest_of(job), content_type="application/json")
            response["Content-Disposition"] = f'attachment; filename="{job.filename}{MANIFEST_SUFFIX}"'
            return response
        if not job.path:
            raise NotFound(
                "This export was streamed when it was asked for and its file is not kept on the server; "
                "its manifest is (?part=manifest)."
            )
        try:
            handle = open(job.path, "rb")
        except FileNotFoundError:
            raise NotFound("The export's file is gone from the server; ask for the export again.") from None
        exports.record_download(request.user, job)
        response = FileResponse(handle, as_attachment=True, filename=job.filename)  # its headers; closes handle
        if served_by_asgi(request):  # Django would read the whole file before its first byte
            response.streaming_content = AsyncChunks(file_chunks(handle))
        return response


class VerificationView(APIView):
    """Walk the audit chain now (audited). 200 with the result; ``ok`` false names the first problem."""

    permission_classes = [RolePermission]
    read_roles = write_roles = OPERATORS

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request):
        return Response(verify_and_record(request.user))


class UsageView(APIView):
    """GPU-hours and framebuffer-hours per tenant, user, profile or host for a period (default: this month),
    and ``series``: GPU-hours per tenant and per profile in each day (week) of it, as the page charts them."""

    permission_classes = [RolePermission]
    read_roles, write_roles = OPERATORS, NOBODY
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FormatParamIsOurs

    @extend_schema(
        parameters=[
            OpenApiParameter("period", str),
            OpenApiParameter("start", str),
            OpenApiParameter("end", str),
            OpenApiParameter("group_by", str, enum=list(GROUPS)),
            OpenApiParameter("format", str, enum=["json", "csv"]),
            OpenApiParameter("bom", bool, description="CSV only: start with a UTF-8 byte order mark (spreadsheets)."),
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
            bom = request.query_params.get("bom", "").lower() in exports.YES
            response = HttpResponse(usage_csv(lines, group_by, bom=bom), content_type="text/csv; charset=utf-8")
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
                "series": usage_series(start, end),
            }
        )


class AuditEventPagination(PortalPagination):
    """``?page=`` as before (a count, and OFFSET: slow deep into a log of millions), or keyset pages by
    position (reports.keyset): ``?before=<seq>`` (empty: the newest) for older events, ``?after=<seq>``
    for newer ones, each answer's ``next`` (older) and ``previous`` (newer) links carrying the cursor."""

    def paginate_queryset(self, queryset, request, view=None):
        self.keyset = None
        params = request.query_params
        if not wants_keyset(params):
            return super().paginate_queryset(queryset, request, view)
        before, after = read_cursor(params)
        for other in ("page", "ordering"):
            if params.get(other):
                raise PortalError(f"{other} cannot be combined with before/after: keyset pages go by position (seq).")
        self.request = request
        self.keyset = keyset_page(queryset, before=before, after=after, size=self.get_page_size(request))
        return self.keyset.rows

    def get_paginated_response(self, data):
        if self.keyset is None:
            return super().get_paginated_response(data)
        url = remove_query_param(remove_query_param(self.request.build_absolute_uri(), "before"), "after")
        older, newer = self.keyset.older, self.keyset.newer
        return Response(
            {
                "next": replace_query_param(url, "before", older) if older is not None else None,
                "previous": replace_query_param(url, "after", newer) if newer is not None else None,
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        paged = super().get_paginated_response_schema(schema)
        paged["required"] = ["results"]
        paged["properties"]["count"]["description"] = "Only with ?page= (not with ?before=/?after=)."
        return paged


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "before",
                int,
                description="Keyset page: the events before this position (seq), newest "
                "first; empty for the newest page. Its `next` link goes on.",
            ),
            OpenApiParameter("after", int, description="Keyset page: the events after this position (seq)."),
        ]
    )
)
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail, newest first. Auditors and platform admins read it; nobody writes it."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    pagination_class = AuditEventPagination
    permission_classes = [RolePermission]
    read_roles, write_roles = OPERATORS, NOBODY
    ordering_fields = ["occurred_at", "id", "seq"]
