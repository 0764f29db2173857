"""Background work is queued with the transaction that asked for it, by the task's name.

Services name their follow-up task (``"allocations.tasks.teardown"``) instead of importing the tasks
module: tasks load a row and call a service, so a service importing its tasks would close an import
circle. The name is resolved when the message is sent, as Celery's own ``send_task`` would, but
through the task object, so eager mode (tests) and a task's own options still apply.

``enqueue_on_commit`` goes through the outbox (``core.outbox``): the order is a row of the same
transaction, sent right after commit, or by the relay once the broker is back. A request whose change
committed therefore never fails because the broker is down, and the work is not lost."""

from __future__ import annotations

from core import outbox


def enqueue(task_path: str, *args, queue: str | None = None) -> None:
    """Send ``task_path(*args)`` to ``queue`` (the task's default queue when None) now; raises when the
    broker cannot take it (callers outside a transaction that must not lose it use the outbox)."""
    outbox.publish(task_path, list(args), queue)


def enqueue_on_commit(task_path: str, *args, queue: str | None = None) -> None:
    """Queue ``task_path(*args)`` with the current transaction: nothing is sent for a change that rolled
    back, and what committed is delivered even if the broker is down at that moment."""
    outbox.add(task_path, *args, queue=queue)
