"""Celery tasks of the identity app (the beat schedule: portal/celery.py)."""

from __future__ import annotations

import logging

from celery import shared_task

from identity.sync import sync_all

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sync_identities() -> dict[str, str]:
    """The periodic group sync (``identity.sync``); what it did, in words, per source."""
    results = {source: str(result) for source, result in sync_all().items()}
    logger.info("identity sync: %s", results)
    return results
