"""Exports of audit events and allocations: streamed for a request, or run as a background job.

Who may export what: auditors and platform admins export everything; an end user exports
the history of their own desktops only. Every export is itself an audit event.

Every export's manifest is kept beside it, so a CSV stays pure data: a background job writes
``<file>.manifest.json`` next to its file; a streamed download is recorded as a job too (no file
kept, ``path`` empty) whose manifest is stored once its last byte has gone out. Either way
``/api/export-jobs/<id>/download/?part=manifest`` hands it out.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from allocations.models import Desktop
from allocations.services.access import desktop_fields_hidden_from, refuse_hidden_filters
from audit import services as audit
from audit.event_export import export_events
from audit.exports import FORMATS, MANIFEST_SUFFIX, Export, manifest_bytes
from audit.models import AuditEvent
from core.datetimes import InvalidInstant, parse_instant
from core.errors import Forbidden, PortalError
from core.queue import enqueue_on_commit
from reports.filters import AuditEventFilterSet
from reports.models import ExportJob
from reports.usage import ALLOCATION_COLUMNS, allocation_rows
from tenancy.roles import roles_of, sees_everything

logger = logging.getLogger(__name__)

#: What the person who asked sees when an export fails: the technical detail goes to the server log and to
#: the audit log (``export.failed``, read by auditors and platform admins), never to the job's ``error``.
JOB_FAILED = (
    "The export failed because of an error on the server; an administrator can see the details in the audit log."
)
#: The last line of a streamed download that failed half-way (after the rows that did go out).
STREAM_FAILED = (
    "The export stopped because of an error on the server: this file is incomplete and has no manifest. "
    "An administrator can see the details in the audit log."
)
#: How a failed CSV download ends (the style of the old ``#manifest,`` line): not a row of the columns.
CSV_FAILED_PREFIX = "#export-failed"


#: What a request or job may carry beside its filters: how to page or shape the file, never what is selected.
NOT_FILTERS = ("format", "page", "page_size", "before", "after", "bom")
#: ``?bom=1`` (or a checked box): a CSV for spreadsheets starts with a UTF-8 byte order mark.
YES = ("1", "true", "yes", "on")


def _filters(params) -> dict:
    return {k: v for k, v in params.items() if k not in NOT_FILTERS and v not in ("", None)}


def _options(params) -> dict:
    """The export's options (kept on a background job beside its filters)."""
    return {"bom": "1"} if str(params.get("bom", "")).lower() in YES else {}


def _audit_events(user, fmt: str, filters: dict) -> Export:
    """The audit log, with the log's own filters: auditors and platform admins only."""
    if not sees_everything(user):
        raise Forbidden("Only auditors and platform admins export the audit log.")
    filterset = AuditEventFilterSet(filters, queryset=AuditEvent.objects.all())
    if not filterset.is_valid():
        raise PortalError("Invalid filter: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in filterset.errors.items()))
    return export_events(filterset.qs, fmt, filters)


_ALLOCATION_FILTERS = (
    ("tenant", "tenant__slug"),
    ("user", "owner__username"),
    ("status", "status"),
    ("profile", "profile__name"),
    ("host", "host__name"),
)


def _allocations(user, fmt: str, filters: dict) -> Export:
    """Desktop history: operators export everyone's, a member their own desktops' (without where they ran)."""
    if not sees_everything(user) and not roles_of(user).tenant_ids:
        raise Forbidden("You have no desktop history to export.")
    refuse_hidden_filters(user, filters)  # ?host= would tell a member where their desktops ran
    desktops = Desktop.objects.visible_to(user)
    for key, lookup in _ALLOCATION_FILTERS:
        if key in filters:
            desktops = desktops.filter(**{lookup: filters[key]})
    for key, lookup in (("since", "requested_at__gte"), ("until", "requested_at__lt")):
        if key in filters:
            try:  # out of range once in UTC (9999-12-31T23:59:59-23:59): refused now, not half-way through the body
                when = parse_instant(filters[key])
            except InvalidInstant as exc:
                raise PortalError(f"{key}: {exc}") from None
            desktops = desktops.filter(**{lookup: when})
    hidden = desktop_fields_hidden_from(user)
    columns = [c for c in ALLOCATION_COLUMNS if c not in hidden]
    return Export(fmt, columns, allocation_rows(desktops), kind="allocations", filters=filters)


#: The kinds of export: each builds a lazy export for a person, or refuses them. A new kind is one entry.
KINDS: dict[str, Callable[[object, str, dict], Export]] = {
    "audit-events": _audit_events,
    "allocations": _allocations,
}


def build_export(user, kind: str, fmt: str, params: dict) -> Export:
    """Validate who asks for what and return the (lazy) export; nothing is read yet."""
    if fmt not in FORMATS:
        raise PortalError(f"format must be one of {', '.join(FORMATS)}")
    builder = KINDS.get(kind)
    if builder is None:
        raise PortalError(f"kind must be one of {', '.join(KINDS)}")
    export = builder(user, fmt, _filters(params))
    export.bom = fmt == "csv" and bool(_options(params))
    return export


def record_export(user, kind: str, fmt: str, filters: dict, *, background: bool = False) -> None:
    with transaction.atomic():
        audit.record(
            "export.started" if not background else "export.queued",
            actor=user,
            object_type="audit.export",
            object_repr=f"{kind} as {fmt}",
            after={"kind": kind, "format": fmt, "filter": _filters(filters)},
        )


def queue_export(user, kind: str, fmt: str, params: dict) -> ExportJob:
    build_export(user, kind, fmt, params)  # the same checks, now, so a bad request fails at once
    with transaction.atomic():
        job = ExportJob.objects.create(
            requested_by_id=user.pk,
            requested_by_username=user.get_username(),
            kind=kind,
            fmt=fmt,
            filters=_filters(params) | _options(params),
        )
        record_export(user, kind, fmt, params, background=True)
        enqueue_on_commit("reports.tasks.run_export", job.pk)
    return job


def run_export_job(job_id: int) -> ExportJob:
    """Write the export to var/exports/ and keep its manifest on the job."""
    from django.contrib.auth import get_user_model

    # Claim the job: a redelivered task (or a second worker) finds it RUNNING and leaves it alone.
    if not ExportJob.objects.filter(pk=job_id, status=ExportJob.Status.PENDING).update(status=ExportJob.Status.RUNNING):
        return ExportJob.objects.get(pk=job_id)
    job = ExportJob.objects.get(pk=job_id)
    user = get_user_model().objects.get(pk=job.requested_by_id)
    directory = Path(settings.VAR_DIR) / "exports"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / job.filename
    partial = path.with_suffix(path.suffix + ".part")
    try:
        export = build_export(user, job.kind, job.fmt, job.filters)
        with open(partial, "wb") as handle:
            for chunk in export:
                handle.write(chunk)
        Path(str(path) + MANIFEST_SUFFIX).write_bytes(manifest_bytes(export.manifest()))
        os.replace(partial, path)  # a download never sees half a file (its manifest is there first)
    except Exception as exc:
        fail_job(job, exc, actor=user, error=JOB_FAILED)
        raise
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportJob.Status.DONE,
        path=str(path),
        rows=export.count,
        manifest=export.manifest(),
        finished_at=timezone.now(),
    )
    return ExportJob.objects.get(pk=job.pk)


def record_streamed(user, kind: str, fmt: str, params: dict) -> ExportJob:
    """The job that keeps a streamed download's manifest (no file: ``path`` stays empty)."""
    return ExportJob.objects.create(
        requested_by_id=user.pk,
        requested_by_username=user.get_username(),
        kind=kind,
        fmt=fmt,
        filters=_filters(params),
        status=ExportJob.Status.RUNNING,
    )


def fail_job(job: ExportJob, exc: BaseException, *, actor, error: str) -> None:
    """``job`` failed: the person sees ``error`` (words); the exception goes to the server log and to the
    audit log (``export.failed``, for admins). Never raises: it runs where an error is already being handled."""
    logger.error("Export job %s (%s as %s) failed", job.pk, job.kind, job.fmt, exc_info=exc)
    try:
        ExportJob.objects.filter(pk=job.pk).update(
            status=ExportJob.Status.FAILED, error=error, finished_at=timezone.now()
        )
        with transaction.atomic():
            audit.record_row("export.failed", job, actor=actor, after={"detail": f"{type(exc).__name__}: {exc}"[:2000]})
    except Exception:  # noqa: BLE001 - the database may be what failed; the log has it all
        logger.exception("Could not record the failure of export job %s", job.pk)


def failure_marker(fmt: str, *, started: bool) -> bytes:
    """The end of a download that failed half-way, in its format, so no reader takes it for a whole file."""
    if fmt == "csv":
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow([CSV_FAILED_PREFIX, STREAM_FAILED])
        return line.getvalue().encode()
    if fmt == "json" and started:  # after '{"rows": [' and the rows so far
        return ('\n],\n"error": ' + json.dumps(STREAM_FAILED) + "}\n").encode()
    return (json.dumps({"error": STREAM_FAILED}) + "\n").encode()


def stream_recording_manifest(export: Export, job: ExportJob, *, actor=None) -> Iterator[bytes]:
    """Yield the export's bytes; once the last has gone out, keep its manifest on ``job`` (done). A download
    that stops before its end leaves the job failed, saying so, and no manifest. An error while reading
    ends the body with ``failure_marker`` (the rows before it went out) and is logged and audited
    (``fail_job``): the response always ends, whatever failed."""
    finished = failed = started = False
    try:
        for chunk in export:
            started = True
            yield chunk
        finished = True
    except Exception as exc:
        failed = True
        fail_job(job, exc, actor=actor, error=STREAM_FAILED)
        yield failure_marker(export.fmt, started=started)
    finally:
        close = getattr(export.rows, "close", None)
        if close is not None:
            close()  # the server-side cursor goes now, not when the export is garbage
        try:
            if finished:
                ExportJob.objects.filter(pk=job.pk).update(
                    status=ExportJob.Status.DONE,
                    rows=export.count,
                    manifest=export.manifest(),
                    finished_at=timezone.now(),
                )
            elif not failed:
                ExportJob.objects.filter(pk=job.pk).update(
                    status=ExportJob.Status.FAILED,
                    error="The download stopped before its end: no manifest was kept.",
                    finished_at=timezone.now(),
                )
        except Exception:  # noqa: BLE001 - the body is out; the log says why its job was not updated
            logger.exception("Could not record the end of streamed export job %s", job.pk)


def manifest_of(job: ExportJob) -> bytes:
    """A finished export's manifest as its file: the one written beside the job's file, else the job's copy."""
    if job.path:
        try:
            return Path(job.path + MANIFEST_SUFFIX).read_bytes()
        except FileNotFoundError:
            pass
    return manifest_bytes(job.manifest)


def record_download(user, job: ExportJob) -> None:
    """Audit that ``user`` downloaded the finished export ``job``."""
    with transaction.atomic():
        audit.record_row("export.downloaded", job, actor=user, after={"rows": job.rows})
