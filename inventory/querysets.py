from django.db import connection, models
from django.db.models.expressions import RawSQL

from inventory.choices import HostState

#: The one state in which a host takes new desktops.
ONLINE_STATE = HostState.ONLINE


def next_capacity_version_sql() -> str:
    """The SQL expression of a new ``Host.capacity_version`` (see ``next_capacity_version``)."""
    if connection.vendor == "postgresql":
        return "GREATEST(txid_current(), capacity_version + 1)"
    return "capacity_version + 1"


def next_capacity_version() -> RawSQL:
    """A new ``Host.capacity_version``: on PostgreSQL at least the writing transaction's id (and more than
    before, so two changes in one transaction differ too), so a reader can ask for the hosts changed by
    transactions it has not seen yet (``allocations.placement.fleet.Fleet``); elsewhere +1."""
    return RawSQL(next_capacity_version_sql(), [])


class HostQuerySet(models.QuerySet):
    def online(self):
        """Hosts that may take new desktops (the claims' and the fleet's SQL say the same with
        ``ONLINE_STATE``)."""
        return self.filter(state=ONLINE_STATE)

    def offline(self):
        """Hosts whose worker or libvirt stopped answering: nothing can be done on them now."""
        return self.filter(state=HostState.OFFLINE)

    def reachable(self):
        """Hosts expected to answer (online, or in maintenance with desktops still running)."""
        return self.exclude(state__in=(HostState.OFFLINE, HostState.RETIRED))

    def active(self):
        """Hosts in service in any state but retired: what the active lists, syncs and heartbeats cover."""
        return self.exclude(state=HostState.RETIRED)

    def retired(self):
        """Hosts taken out of service for good, kept for their history."""
        return self.filter(state=HostState.RETIRED)

    def touch(self, host_id: int | None) -> None:
        """Mark the host changed (its row or its GPU rows were added, edited or removed): the scheduler
        reads it again."""
        if host_id:
            self.filter(pk=host_id).update(capacity_version=next_capacity_version())


class GPUQuerySet(models.QuerySet):
    def present(self):
        return self.filter(present=True)
