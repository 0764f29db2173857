"""The permission matrix: every endpoint × every verb × the four personas (and anonymous).

The expected outcome of each cell is declared in ACCESS below, the product's
access policy written as a table; each cell is its own test, on a fresh world.
Successful writes must leave exactly their audit event; refused ones must change
nothing and record nothing.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from allocations.services.quotas import request_quota_increase
from allocations.services.request import request_desktop
from allocations.tests.factories import make_membership, make_template, make_tenant, make_user
from audit.models import AuditEvent
from inventory.models import VGPUProfile
from inventory.tests.factories import make_gpu, make_host, make_profile
from reports.exports import queue_export
from tenancy.models import Membership
from tenancy.roles import Role
from tenancy.tokens import issue_token

ADMIN, AUDITOR, MEMBER, OUTSIDER = "platform_admin", "auditor", "tenant_member", "outsider"
PERSONAS = (ADMIN, AUDITOR, MEMBER, OUTSIDER)
EVERYONE = set(PERSONAS)

# endpoint: who may read, who may write, which verbs exist, and whether rows are tenant-scoped
ACCESS = {
    "hosts": {"read": {ADMIN, AUDITOR}, "write": {ADMIN}, "verbs": "LRCUD", "scoped": False},
    "gpus": {"read": {ADMIN, AUDITOR}, "write": {ADMIN}, "verbs": "LRCUD", "scoped": False},
    "vgpu-profiles": {"read": EVERYONE, "write": {ADMIN}, "verbs": "LRCUD", "scoped": False},
    "tenants": {"read": EVERYONE, "write": {ADMIN}, "verbs": "LRCUD", "scoped": True},
    "quotas": {"read": EVERYONE, "write": {ADMIN}, "verbs": "LRU", "scoped": True},
    "memberships": {"read": EVERYONE, "write": {ADMIN}, "verbs": "LRCUD", "scoped": True},
    "templates": {"read": EVERYONE, "write": {ADMIN}, "verbs": "LRCUD", "scoped": True},
    "audit-events": {"read": {ADMIN, AUDITOR}, "write": set(), "verbs": "LR", "scoped": False},
    # Desktops are asked for by tenant members for their own tenant; nobody edits or deletes one
    # (release is an action). Platform admins hold no tenant, so they cannot ask for one.
    "desktops": {
        "read": EVERYONE,
        "write": {ADMIN, MEMBER, OUTSIDER},
        "verbs": "LRC",
        "scoped": True,
        "expect": {("create", ADMIN): 403, ("create", OUTSIDER): 404},
    },
    # Background exports: anyone may ask (what they may export is checked by kind); each sees their own jobs.
    "export-jobs": {
        "read": EVERYONE,
        "write": EVERYONE,
        "verbs": "LRC",
        "scoped": True,
        "expect": {("create", p): 202 for p in PERSONAS} | {("retrieve", ADMIN): 404, ("retrieve", AUDITOR): 404},
    },
    "quota-requests": {
        "read": EVERYONE,
        "write": {ADMIN, MEMBER, OUTSIDER},
        "verbs": "LRC",
        "scoped": True,
        "expect": {("create", ADMIN): 403},
    },
    # Bookings (issue 18): members book for their own tenant (platform admins name one: 400 without);
    # cancel is an action, nobody edits or deletes one.
    "bookings": {
        "read": EVERYONE,
        "write": {ADMIN, MEMBER, OUTSIDER},
        "verbs": "LRC",
        "scoped": True,
        "expect": {("create", ADMIN): 400, ("create", OUTSIDER): 404},
    },
    # People (issue 16): operators read accounts and their roles; platform admins (de)activate them.
    "people": {"read": {ADMIN, AUDITOR}, "write": {ADMIN}, "verbs": "LRU", "scoped": False},
    # API tokens: each person sees and revokes (DELETE) only their own, platform admins included.
    "tokens": {
        "read": EVERYONE,
        "write": EVERYONE,
        "verbs": "LRCD",
        "scoped": True,
        "expect": {(verb, p): 404 for verb in ("retrieve", "delete") for p in (ADMIN, AUDITOR, OUTSIDER)},
    },
}
VERBS = {"L": "list", "R": "retrieve", "C": "create", "U": "update", "D": "delete"}
SUCCESS = {"list": 200, "retrieve": 200, "create": 201, "update": 200, "delete": 204}


@pytest.fixture
def world(personas, tenant, other_tenant, lab, catalog):
    """One row of each kind, owned by ``tenant`` where rows have an owner."""
    profile = VGPUProfile.objects.get(name="A40-8Q")
    spare_profile = make_profile("A10-4Q", board_framebuffer_mib=24576)
    host = make_host("gpu-1", state="offline")  # desktops go to the lab host, so this one stays deletable
    gpu = make_gpu(host)
    lab("lab-a40=A40x2")
    template = make_template("CAD", profile=profile, tenants=[tenant])
    desktop = request_desktop(actor=personas[MEMBER], template_id=template.pk, duration_hours=2)
    quota_request = request_quota_increase(
        actor=personas[MEMBER], tenant=tenant, changes={"max_desktops": 5}, reason="course"
    )
    request_quota_increase(actor=personas[OUTSIDER], tenant=other_tenant, changes={"max_desktops": 4}, reason="x")
    export_job = queue_export(personas[MEMBER], "allocations", "csv", {})
    unused_template = make_template("Globex only", profile=profile, tenants=[other_tenant])
    make_user("newcomer")
    AuditEvent.objects.create(verb="seed.done", object_type="test.seed")
    membership = Membership.objects.get(user=personas[MEMBER])
    return {
        "hosts": {
            "row": host,
            "create": {"name": "gpu-2", "libvirt_uri": "qemu:///system"},
            "update": {"state": "maintenance"},
        },
        "gpus": {
            "row": gpu,
            "create": {"host": host.pk, "pci_address": "0000:42:00.0", "model": "A40", "framebuffer_mib": 49152},
            "update": {"current_profile": profile.pk},
        },
        "vgpu-profiles": {
            "row": spare_profile,
            "create": {
                "name": "A40-2Q",
                "board": "A40",
                "board_framebuffer_mib": 49152,
                "series": "Q",
                "framebuffer_mib": 2048,
                "max_per_gpu": 24,
            },
            "update": {"mdev_type_id": "nvidia-558"},
        },
        "tenants": {
            "row": tenant,
            "delete_row": make_tenant("Initrode", "initrode"),  # Acme holds a desktop: it cannot go
            "create": {"name": "Initech", "slug": "initech", "quota": {"max_desktops": 3}},
            "update": {"description": "Materials science"},
        },
        "quotas": {"row": tenant.quota, "update": {"max_desktops": 9}},
        "memberships": {
            "row": membership,
            "create": {"user": "newcomer", "tenant": tenant.pk, "role": Role.TENANT_MEMBER},
            "update": {"tenant": other_tenant.pk},
        },
        "templates": {
            "row": template,
            "delete_row": unused_template,  # CAD has a desktop: it can only be retired
            "create": {
                "name": "Office",
                "profile": "A40-24Q",
                "vcpus": 2,
                "memory_mib": 4096,
                "disk_image": "debian-12.qcow2",
                "allowed_tenants": [tenant.pk],
            },
            "update": {"vcpus": 6},
        },
        "audit-events": {"row": AuditEvent.objects.get(verb="seed.done")},
        "desktops": {"row": desktop, "create": {"template": template.pk, "duration_hours": 1}},
        "export-jobs": {"row": export_job, "create": {"kind": "allocations", "format": "csv"}},
        # framebuffer: each tenant already has its one pending request for max_desktops (a second is a 409)
        "quota-requests": {"row": quota_request, "create": {"max_framebuffer_mib": 65536, "reason": "a workshop"}},
        "tokens": {"row": issue_token(personas[MEMBER], actor=personas[MEMBER], name="a script")[0], "create": {}},
        "people": {"row": get_user_model().objects.get(username="newcomer"), "update": {"is_active": False}},
        "bookings": _booking_world(personas[MEMBER], template),  # issue 18
    }


def _booking_world(member, template) -> dict:
    from datetime import timedelta

    from django.utils import timezone

    from bookings.services import book

    start = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    row = book(actor=member, template_id=template.pk, start=start, end=start + timedelta(hours=1))
    later = start + timedelta(days=1)
    return {
        "row": row,
        "create": {
            "template": template.pk,
            "start": later.isoformat(),
            "end": (later + timedelta(hours=1)).isoformat(),
        },
    }


def _expected(endpoint: str, verb: str, persona: str | None) -> int:
    rule = ACCESS[endpoint]
    if persona is None:
        return 401
    letter = {"create": "C", "update": "U", "delete": "D"}.get(verb)
    if letter and letter not in rule["verbs"]:
        return 405  # the verb does not exist here, for anyone signed in
    if (verb, persona) in rule.get("expect", {}):
        return rule["expect"][(verb, persona)]
    allowed = rule["read"] if verb in ("list", "retrieve") else rule["write"]
    if persona not in allowed:
        return 403
    if verb == "retrieve" and rule["scoped"] and persona == OUTSIDER:
        return 404  # another tenant's row: "not found", never "forbidden"
    return SUCCESS[verb]


CASES = [(endpoint, verb, persona) for endpoint in ACCESS for verb in VERBS.values() for persona in (*PERSONAS, None)]


@pytest.mark.parametrize("endpoint,verb,persona", CASES, ids=[f"{e}-{v}-{p or 'anonymous'}" for e, v, p in CASES])
def test_permission_matrix(api, personas, world, endpoint, verb, persona):
    client = api.as_user(personas[persona] if persona else None)
    data = world[endpoint]
    base = f"/api/{endpoint}/"
    detail = f"{base}{data['row'].pk}/"
    events_before = AuditEvent.objects.count()

    if verb == "list":
        response = client.get(base)
    elif verb == "retrieve":
        response = client.get(detail)
    elif verb == "create":
        response = client.post(base, data.get("create", {}), format="json")
    elif verb == "update":
        response = client.patch(detail, data.get("update", {}), format="json")
    else:
        response = client.delete(f"{base}{data.get('delete_row', data['row']).pk}/")

    expected = _expected(endpoint, verb, persona)
    assert response.status_code == expected, response.content
    if expected >= 400:
        body = response.json()
        assert body["error"]["status"] == expected
        assert body["error"]["message"]
    written = AuditEvent.objects.count() - events_before
    if verb in ("create", "update", "delete") and expected < 300:
        assert written >= 1, "a successful write must be audited"
        assert AuditEvent.objects.filter(actor_id=personas[persona].pk).exists()
    else:
        assert written == 0, "a read or a refused write must record nothing"


def test_matrix_covers_every_registered_endpoint():
    from portal.urls import router

    assert {prefix for prefix, _, _ in router.registry} == set(ACCESS)


def test_refused_write_changes_nothing(api, personas, world):
    host = world["hosts"]["row"]
    response = api.as_user(personas[AUDITOR]).patch(f"/api/hosts/{host.pk}/", {"state": "online"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Auditors have read-only access."
    host.refresh_from_db()
    assert host.state == "offline"


@pytest.mark.parametrize("endpoint", ["tenants", "quotas", "templates", "memberships", "quota-requests"])
def test_tenant_member_lists_only_own_tenant_rows(api, personas, world, tenant, other_tenant, endpoint):
    member_rows = api.as_user(personas[MEMBER]).get(f"/api/{endpoint}/").json()["results"]
    outsider_rows = api.as_user(personas[OUTSIDER]).get(f"/api/{endpoint}/").json()["results"]
    admin_rows = api.as_user(personas[ADMIN]).get(f"/api/{endpoint}/").json()["results"]
    member_ids = {row["id"] for row in member_rows}
    outsider_ids = {row["id"] for row in outsider_rows}
    assert member_ids and outsider_ids
    assert not member_ids & outsider_ids
    assert member_ids | outsider_ids <= {row["id"] for row in admin_rows}


def test_end_user_does_not_learn_which_tenants_share_a_template(api, personas, world):
    row = api.as_user(personas[MEMBER]).get("/api/templates/").json()["results"][0]
    assert "allowed_tenants" not in row
    admin_row = api.as_user(personas[ADMIN]).get("/api/templates/").json()["results"][0]
    assert "allowed_tenants" in admin_row


def test_session_auth_works_and_token_endpoint_issues_tokens(client, personas, world):
    client.force_login(personas[AUDITOR])
    assert client.get("/api/hosts/").status_code == 200
    anonymous = type(client)()
    response = anonymous.post("/api/auth/token/", {"username": "auditor", "password": "pw-for-tests-1"})
    assert response.status_code == 200
    token = response.json()["token"]
    assert anonymous.get("/api/hosts/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    bad = anonymous.post("/api/auth/token/", {"username": "auditor", "password": "wrong"})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("Invalid input.")


def test_user_without_any_role_is_refused_everywhere(api, world):
    nobody = get_user_model().objects.get(username="newcomer")
    for endpoint in ACCESS:
        assert api.as_user(nobody).get(f"/api/{endpoint}/").status_code == 403


def test_me_reports_roles_and_tenants(api, personas, tenant):
    body = api.as_user(personas[MEMBER]).get("/api/me/").json()
    assert body == {
        "username": "alice",
        "roles": ["tenant-member"],
        "tenants": [{"id": tenant.pk, "name": tenant.name, "slug": tenant.slug}],
    }
    make_membership(personas[MEMBER], Role.AUDITOR)
    assert api.as_user(personas[MEMBER]).get("/api/me/").json()["roles"] == ["auditor", "tenant-member"]
