import json
from dataclasses import asdict

from django.core.management.base import BaseCommand, CommandError

from inventory.drivers.base import DriverError
from inventory.models import Host
from inventory.services.connect import driver_for, telemetry_for


class Command(BaseCommand):
    help = "Read one host's GPU telemetry now (NVML or its simulated source) and print it as JSON."

    def add_arguments(self, parser):
        parser.add_argument("host")

    def handle(self, *args, host, **options):
        row = Host.objects.filter(name=host).first()
        if row is None:
            raise CommandError(f"unknown host {host}")
        try:
            discovery = driver_for(row).discover()
        except DriverError as exc:
            raise CommandError(str(exc)) from None
        sample = telemetry_for(row).sample(discovery.gpus, discovery.mdevs, discovery.domains)
        self.stdout.write(json.dumps(asdict(sample), indent=1))
