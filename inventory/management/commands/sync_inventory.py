from django.core.management.base import BaseCommand, CommandError

from inventory.drivers.base import DriverError
from inventory.models import Host
from inventory.services.sync import sync_host


class Command(BaseCommand):
    help = "Read hosts through libvirt (and their telemetry source) and bring GPU rows in line; report drift."

    def add_arguments(self, parser):
        parser.add_argument("hosts", nargs="*", help="host names (default: every host)")

    def handle(self, *args, hosts, **options):
        rows = Host.objects.filter(name__in=hosts) if hosts else Host.objects.all()
        missing = sorted(set(hosts) - set(rows.values_list("name", flat=True)))
        if missing:
            raise CommandError(f"unknown host(s): {', '.join(missing)}")
        failures = 0
        for host in rows.order_by("name"):
            try:
                self.stdout.write(sync_host(host).summary())
            except DriverError as exc:
                failures += 1
                hint = " (will retry)" if exc.retryable else ""
                self.stderr.write(f"{host.name}: {exc}{hint}")
        if failures:
            raise CommandError(f"{failures} host(s) could not be read")
