"""Background work is queued when the transaction that asked for it commits, by the task's name.

Services name their follow-up task (``"allocations.tasks.teardown"``) instead of importing the tasks
module: tasks load a row and call a service, so a service importing its tasks would close an import
circle. The name is resolved when the message is sent, as Celery's own ``send_task`` would, but
through the task object, so eager mode (tests) and a task's own options still apply."""

from __future__ import annotations

from django.db import transaction
from django.utils.module_loading import import_string


def enqueue(task_path: str, *args, queue: str | None = None) -> None:
    """Send ``task_path(*args)`` to ``queue`` (the task's default queue when None) now."""
    import_string(task_path).apply_async(args=list(args), queue=queue)


def enqueue_on_commit(task_path: str, *args, queue: str | None = None) -> None:
    """``enqueue`` once the current transaction commits; nothing is sent for a change that rolled back."""
    transaction.on_commit(lambda: enqueue(task_path, *args, queue=queue))
