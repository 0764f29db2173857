"""Property-based fuzzing (issue 15): every API operation of the published schema, as a tenant member and as a
platform admin, with valid and invalid input (schemathesis), and the main forms (hypothesis): no answer may
be a 5xx. Each 5xx found so far has its own regression test beside the code that fixed it.

Bounded so the suite stays fast (``PORTAL_FUZZ_EXAMPLES`` per API operation and mode, default 3, ten times
that per form; examples are derandomized so CI is reproducible). Explore further with e.g.
``PORTAL_FUZZ_EXAMPLES=200 PORTAL_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.test import Client
from django.test.client import ClientHandler
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from allocations.tests.factories import make_template

EXAMPLES = int(os.environ.get("PORTAL_FUZZ_EXAMPLES", "3"))
RANDOM = os.environ.get("PORTAL_FUZZ_RANDOM") == "1"
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not RANDOM,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if RANDOM else []),
)
FORMS = settings(FUZZ, max_examples=10 * EXAMPLES)


def _wsgi(handler: ClientHandler):
    """Django's test handler as a WSGI app: it keeps the test's database connection open (a plain
    WSGIHandler would close it after each request) and skips CSRF as the test client does."""

    def app(environ, start_response):
        response = handler(environ)
        headers = list(response.items()) + [("Set-Cookie", c.output(header="")) for c in response.cookies.values()]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        return response

    return app


@pytest.fixture(scope="module")
def api_schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        raw = SchemaGenerator().get_schema(request=None, public=True)
    schema = schemathesis.openapi.from_dict(raw)
    schema.app = _wsgi(ClientHandler(enforce_csrf_checks=False))
    return schema


@pytest.fixture
def world(tenant, other_tenant, catalog):
    """Rows for the fuzzer to find: two tenants, templates offered to them."""
    make_template("Workstation", tenants=[tenant])
    make_template("Shared", tenants=[tenant, other_tenant])


def _session_cookie(user) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {django_settings.SESSION_COOKIE_NAME: client.cookies[django_settings.SESSION_COOKIE_NAME].value}


@pytest.mark.parametrize("persona", ["tenant_member", "platform_admin"])
def test_no_api_operation_answers_5xx(api_schema, world, personas, persona):
    cookies = _session_cookie(personas[persona])
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 30
    for operation in operations:
        takes_input = any(len(part) for part in (operation.path_parameters, operation.query, operation.body))
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,):

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case):
                response = case.call(cookies=cookies)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                call()
            except Unsatisfiable:
                pass  # no invalid variant exists (an operation without parameters or body)
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)


# --- the forms ------------------------------------------------------------------------------------

TEXT = st.text(max_size=40) | st.sampled_from(
    ["", "0", "-1", "1e309", "9" * 30, "9999-12-31T23:59:59-23:59", "2026-02-30", "<b>", "a\x00b", "[[[", "null"]
)
IDS = st.integers(min_value=-(2**70), max_value=2**70).map(str) | TEXT


def _page_client(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _assert_no_5xx(response, what):
    assert response.status_code < 500, f"{what} → {response.status_code}"


def test_the_desktop_request_form_answers_no_5xx(world, tenant_member):
    client = _page_client(tenant_member)

    @FORMS
    @given(template=IDS, duration=IDS, name=TEXT, tenant=IDS)
    def post(template, duration, name, tenant):
        data = {"template": template, "duration_hours": duration, "name": name, "tenant": tenant}
        _assert_no_5xx(client.post("/desktops/new/", data), data)

    post()


def test_the_quota_request_form_answers_no_5xx(world, tenant_member):
    client = _page_client(tenant_member)

    @FORMS
    @given(gpus=IDS, fb=IDS, desktops=IDS, reason=TEXT, tenant=IDS)
    def post(gpus, fb, desktops, reason, tenant):
        data = {"max_gpus": gpus, "max_framebuffer_mib": fb, "max_desktops": desktops, "reason": reason}
        data["tenant"] = tenant
        _assert_no_5xx(client.post("/quota-requests/new/", data), data)

    post()


@pytest.mark.parametrize("persona", ["tenant_member", "platform_admin"])
def test_the_export_form_answers_no_5xx(world, personas, persona):
    client = _page_client(personas[persona])

    @FORMS
    @given(
        kind=st.sampled_from(["allocations", "audit-events", ""]) | TEXT,
        fmt=st.sampled_from(["csv", "json", "ndjson"]) | TEXT,
        key=st.sampled_from(["user", "tenant", "status", "profile", "host", "since", "until", "actor"]),
        value=TEXT,
    )
    def post(kind, fmt, key, value):
        data = {"kind": kind, "format": fmt, key: value}
        _assert_no_5xx(client.post("/exports/", data), data)

    post()


def test_the_audit_filter_form_answers_no_5xx(world, auditor):
    client = _page_client(auditor)
    fields = ["since", "until", "actor", "verb", "verb_prefix", "object_type", "object_id", "actor_id", "tenant"]

    @FORMS
    @given(values=st.dictionaries(st.sampled_from(fields + ["tenant_id", "request_id", "page"]), IDS, max_size=4))
    def get(values):
        _assert_no_5xx(client.get("/audit/", values), values)
        _assert_no_5xx(
            client.get("/reports/usage/", {"start": values.get("since", ""), "end": values.get("until", "")}), values
        )

    get()
