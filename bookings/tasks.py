"""Beat's entry into the booked windows' life (``bookings.sweeps`` has the policy)."""

from celery import shared_task

from bookings import sweeps


@shared_task(time_limit=120, soft_time_limit=100)
def run_calendar() -> dict:
    return sweeps.run_calendar()
