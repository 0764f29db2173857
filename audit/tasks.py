from celery import shared_task

from audit import checkpoints


@shared_task
def checkpoint_audit() -> int | None:
    """Beat: sign the chain's head and anchor it (skipped when nothing was written since the last checkpoint;
    refused, with the reason in the worker's log, when the chain no longer holds together)."""
    made = checkpoints.checkpoint()
    return made.seq if made else None
