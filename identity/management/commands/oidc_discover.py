"""``manage.py oidc_discover https://idp.example.org/realms/x``: the PORTAL_OIDC_*_ENDPOINT lines to set."""

from django.core.management.base import BaseCommand, CommandError

from identity.config import discover


class Command(BaseCommand):
    help = "Print the PORTAL_OIDC_*_ENDPOINT environment lines from a provider's discovery document."

    def add_arguments(self, parser):
        parser.add_argument("issuer", help="The provider's issuer URL (the part before /.well-known/...).")

    def handle(self, *args, issuer, **options):
        try:
            endpoints = discover(issuer)
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"Could not read {issuer}/.well-known/openid-configuration: {exc}") from exc
        for name, value in endpoints.items():
            self.stdout.write(f"{name}={value}")
