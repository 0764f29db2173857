"""Background exports: the job lives in the database (``ExportJob``); the task loads it and runs it."""

from celery import shared_task

from reports.exports import run_export_job


# Under the broker's visibility timeout (900 s), so a running export is never handed out twice; a
# million audit events take about a minute (bench/audit_export.py).
@shared_task(acks_late=True, soft_time_limit=780, time_limit=840)
def run_export(job_id: int) -> int | None:
    return run_export_job(job_id).rows
