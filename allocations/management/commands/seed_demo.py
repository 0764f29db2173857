"""Create the demo: two tenants, a user for each role and desktop templates (hosts come from `manage.py lab`).

Idempotent: a second run changes nothing and prints the same logins. Passwords
are generated once and kept in var/demo-logins.txt (mode 600), unless
DEMO_PASSWORD is set.
"""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from allocations.models import DesktopTemplate, Quota
from inventory.models import VGPUProfile
from tenancy.models import Membership, Tenant
from tenancy.roles import Role

TENANTS = [
    ("Acme Research", "acme", {"max_desktops": 4, "max_framebuffer_mib": 32768, "max_desktop_hours": 12}),
    ("Globex Design", "globex", {"max_desktops": 2, "max_framebuffer_mib": 16384, "max_desktop_hours": 8}),
]
USERS = [
    # username, role, tenant slug
    ("admin", Role.PLATFORM_ADMIN, None),
    ("auditor", Role.AUDITOR, None),
    ("alice", Role.TENANT_MEMBER, "acme"),
    ("bob", Role.TENANT_MEMBER, "globex"),
]
TEMPLATES = [
    # name, GPU part, vcpus, memory MiB, image, tenants. GPU part: a profile name, {"share": milli,
    # "models": [...]} (the scheduler picks the board and profile), or {"whole": n, "models": [...]}.
    ("CAD workstation (A40-8Q)", "A40-8Q", 8, 16384, "debian-12-desktop.qcow2", ["acme", "globex"]),
    ("Office desktop (A16-2B)", "A16-2B", 2, 4096, "debian-12-desktop.qcow2", ["acme", "globex"]),
    ("Render node (A40-24Q)", "A40-24Q", 16, 65536, "debian-12-render.qcow2", ["acme"]),
    ("Whole L40S (passthrough)", {"whole": 1, "models": ["L40S"]}, 16, 65536, "debian-12-cuda.qcow2", ["acme"]),
    (
        "Any workstation (¼ board, Q)",
        {"share": 250, "models": []},
        4,
        8192,
        "debian-12-desktop.qcow2",
        ["acme", "globex"],
    ),
]


def _passwords() -> dict[str, str]:
    fixed = os.environ.get("DEMO_PASSWORD")
    if fixed:
        return {name: fixed for name, _, _ in USERS}
    path = settings.VAR_DIR / "demo-logins.txt"
    known = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, password = line.partition(" ")
            if name and password:
                known[name] = password
    missing = [name for name, _, _ in USERS if name not in known]
    if missing:
        for name in missing:
            known[name] = secrets.token_urlsafe(9)
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text("".join(f"{n} {p}\n" for n, p in known.items()))
    return known


class Command(BaseCommand):
    help = "Create demo tenants, one user per role and templates (idempotent); print the logins."

    def handle(self, *args, **options):
        profiles = {p.name: p for p in VGPUProfile.objects.all()}
        needed = [t[1] for t in TEMPLATES if isinstance(t[1], str)]
        if not all(name in profiles for name in needed):
            raise CommandError("The vGPU catalog is not loaded: run `manage.py seed_profiles` first.")
        passwords = _passwords()
        with transaction.atomic():
            tenants = {}
            for name, slug, quota in TENANTS:
                tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
                Quota.objects.get_or_create(tenant=tenant, defaults=quota)
                tenants[slug] = tenant
            User = get_user_model()
            for username, role, slug in USERS:
                user, created = User.objects.get_or_create(
                    username=username, defaults={"email": f"{username}@example.org"}
                )
                if created or not user.check_password(passwords[username]):
                    user.set_password(passwords[username])
                if role == Role.PLATFORM_ADMIN:
                    user.is_staff = user.is_superuser = True
                user.save()
                Membership.objects.get_or_create(user=user, role=role, tenant=tenants.get(slug))
            for name, gpu, vcpus, memory, image, slugs in TEMPLATES:
                spec = {} if isinstance(gpu, str) else gpu
                template, created = DesktopTemplate.objects.get_or_create(
                    name=name,
                    defaults={
                        "profile": profiles[gpu] if isinstance(gpu, str) else None,
                        "gpu_share_milli": spec.get("share"),
                        "gpu_count": spec.get("whole", 1),
                        "gpu_models": spec.get("models", []),
                        "vcpus": vcpus,
                        "memory_mib": memory,
                        "disk_image": image,
                    },
                )
                if created:
                    template.allowed_tenants.set(tenants[s] for s in slugs)
        self.stdout.write("Demo logins (user, password, role):")
        for username, role, slug in USERS:
            where = f" in {tenants[slug].name}" if slug else ""
            self.stdout.write(f"  {username:<8} {passwords[username]:<14} {role.label}{where}")
