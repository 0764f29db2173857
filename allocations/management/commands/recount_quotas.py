from django.core.management.base import BaseCommand

from allocations.services.quotas import recount
from tenancy.models import Tenant


class Command(BaseCommand):
    help = (
        "Set every tenant's held-desktop and held-framebuffer counters to what its desktops hold now "
        "(each under its quota lock; a correction is an audit event 'quota.recounted')."
    )

    def handle(self, *args, **options):
        fixed = [t.slug for t in Tenant.objects.filter(quota__isnull=False).order_by("slug") if recount(t)]
        self.stdout.write(f"recounted {len(fixed)} tenant(s){': ' + ', '.join(fixed) if fixed else ''}")
