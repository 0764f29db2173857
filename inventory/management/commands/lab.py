from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.errors import PortalError
from inventory.drivers.base import DriverError
from inventory.models import Host
from inventory.services.connect import driver_for
from inventory.services.lab import DEFAULT_HOSTS, LabHostSpec, create_lab_host
from inventory.services.sync import sync_host


class Command(BaseCommand):
    help = (
        "Build lab hosts (GPUs with vGPU types from the catalog) and sync them into the inventory. "
        "`lab create [--flavour test|vm] [--host NAME=BOARDxN[:passthrough]]...`, `lab status`."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="write lab files, create the Host rows, sync them")
        create.add_argument("--flavour", choices=["test", "vm"], default="test")
        create.add_argument("--host", action="append", dest="hosts", help=f"default: {' '.join(DEFAULT_HOSTS)}")
        create.add_argument("--dir", default=str(settings.VAR_DIR / "lab"))
        sub.add_parser("status", help="what each lab host's libvirt reports")
        sub.add_parser("queues", help="print every host's task queue (host.<name>), one per line")

    def handle(self, *args, action, **options):
        if action == "create":
            self._create(options["flavour"], options["hosts"] or list(DEFAULT_HOSTS), Path(options["dir"]))
        elif action == "queues":
            for host in Host.objects.order_by("name"):
                self.stdout.write(host.queue)
        else:
            self._status()

    def _create(self, flavour: str, hosts: list[str], directory: Path):
        try:
            specs = [LabHostSpec.parse(text) for text in hosts]
            for spec in specs:
                host = create_lab_host(spec, directory=directory, flavour=flavour)
                report = sync_host(host)
                self.stdout.write(f"{flavour} lab host {host.name} ({host.libvirt_uri}): {report.summary()}")
        except (PortalError, DriverError) as exc:
            raise CommandError(str(exc)) from None

    def _status(self):
        hosts = Host.objects.exclude(lab_xml="").order_by("name")
        if not hosts:
            self.stdout.write("No lab hosts. Create them with `manage.py lab create`.")
        for host in hosts:
            try:
                driver = driver_for(host)
                discovery = driver.discover()
            except DriverError as exc:
                self.stdout.write(f"{host.name}: unreachable: {exc}")
                continue
            self.stdout.write(
                f"{host.name} [{host.state}] {host.libvirt_uri}: {len(discovery.gpus)} GPU(s), "
                f"{len(discovery.mdevs)} vGPU instance(s), {len(discovery.domains)} domain(s)"
            )
            for domain in discovery.domains:
                self.stdout.write(f"  domain {domain.name}: {domain.state} vnc={domain.vnc_port or '-'}")
