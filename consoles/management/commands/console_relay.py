"""``manage.py console_relay --listen 127.0.0.1:5800 --uri qemu:///system --hosts lab-a40,lab-l40s``:
the console relay beside a host's worker (consoles.relay). It needs the grant key
(PORTAL_CONSOLE_RELAY_KEY, or the SECRET_KEY it is derived from) and the host's libvirt; no database."""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from consoles.relay import ConsoleRelay, parse_address, serve_until_signalled


class Command(BaseCommand):
    help = "Run the console relay: signed grants in, the guest's VNC (on this host's loopback) out."

    def add_arguments(self, parser):
        parser.add_argument("--listen", default=settings.PORTAL_CONSOLE_RELAY, help="host:port to listen on")
        parser.add_argument("--uri", default="qemu:///system", help="libvirt URI of the hosts served")
        parser.add_argument(
            "--hosts",
            required=True,
            help="comma-separated names of the hosts this relay serves (as in the portal); name=uri gives one "
            "host its own libvirt URI",
        )

    def handle(self, *args, listen, uri, hosts, **options):
        try:
            address, port = parse_address(listen)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        served = {}
        for item in filter(None, (part.strip() for part in hosts.split(","))):
            name, _, own_uri = item.partition("=")
            served[name] = own_uri or uri
        if not served:
            raise CommandError("--hosts names no host")
        relay = ConsoleRelay(key=settings.PORTAL_CONSOLE_RELAY_KEY.encode(), hosts=served)

        def ready():
            self.stdout.write(f"console relay listening on {listen} for {', '.join(sorted(served))}")
            self.stdout.flush()

        asyncio.run(serve_until_signalled(relay, address, port, ready=ready))
        self.stdout.write("console relay stopped")
