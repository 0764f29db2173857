"""Bad input that used to be a 500 (issue 15): each is now a 400 or 404 with a message a person can read."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from audit.models import AuditEvent
from core.datetimes import InvalidInstant, parse_instant
from core.limits import MAX_JSON_DEPTH
from core.parsers import nesting_depth

pytestmark = pytest.mark.django_db


def _error(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return json.loads(response.content)["error"]


# --- NUL and other control characters --------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/exports/allocations/?user=%00",
        "/api/exports/allocations/?format=csv&user=a%00b",
        "/api/desktops/?host=%00",
        "/api/audit-events/?actor=%00",
        "/api/desktops/%00/extend/",
        "/api/hosts/%00/",
        "/api/templates/?name=%1b",
    ],
)
def test_nul_in_an_api_filter_or_path_is_a_json_400(api, platform_admin, path):
    """Regression: ``/api/exports/allocations/?user=%00`` reached PostgreSQL (DataError, a 500), and the NUL
    reached the export's audit event's JSON."""
    client = api.as_user(platform_admin)
    before = AuditEvent.objects.count()
    response = client.get(path) if "extend" not in path else client.post(path)
    assert response.status_code == 400
    assert "control character" in _error(response)["message"]
    assert AuditEvent.objects.count() == before  # nothing was recorded with the NUL in it


@pytest.mark.parametrize("path", ["/inventory/hosts/%00/", "/hosts/%00/desktops/", "/audit/?actor=%00"])
def test_nul_in_a_page_address_is_a_400_page(platform_admin, path):
    """Regression: ``/inventory/hosts/%00/`` and ``/hosts/%00/desktops/`` were DataErrors on PostgreSQL."""
    client = Client()
    client.force_login(platform_admin)
    response = client.get(path)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert "control character" in response.content.decode()


def test_nul_in_the_export_form_is_refused_and_nothing_is_queued(tenant_member):
    """Regression: the export form's filter field with NUL went into the job row and its audit event."""
    client = Client()
    client.force_login(tenant_member)
    before = AuditEvent.objects.count()
    response = client.post("/exports/", {"kind": "allocations", "format": "csv", "user": "al\x00ice"})
    assert response.status_code == 400
    assert "NUL" in response.content.decode()
    assert AuditEvent.objects.count() == before


def test_tab_and_newline_in_a_filter_value_are_not_refused(api, platform_admin):
    assert api.as_user(platform_admin).get("/api/templates/?name=a%09b%0Ac").status_code == 200


# --- JSON bodies --------------------------------------------------------------------------------


def test_a_json_body_nested_100k_deep_is_a_400_not_a_recursion_error(api, tenant_member):
    """Regression: a JSON body of 100,000 ``[`` raised RecursionError (a 500)."""
    response = api.as_user(tenant_member).post("/api/desktops/", "[" * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert "nests deeper" in _error(response)["message"]


def test_json_nested_within_the_limit_is_parsed(api, tenant_member):
    body = json.dumps({"template": 1, "duration_hours": 2, "name": "x"})
    response = api.as_user(tenant_member).post("/api/desktops/", body, content_type="application/json")
    assert response.status_code != 400 or "nests deeper" not in _error(response)["message"]


def test_a_nul_inside_a_json_string_is_a_400(api, platform_admin):
    response = api.as_user(platform_admin).post(
        "/api/tenants/", '{"name": "Ac\\u0000me", "slug": "acme2"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "NUL" in _error(response)["message"]


def test_nesting_depth_counts_brackets_outside_strings_only():
    assert nesting_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert nesting_depth(b'"\\"[[["') == 0
    assert nesting_depth(b"[" * (MAX_JSON_DEPTH + 1)) == MAX_JSON_DEPTH + 1


# --- ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pk", ["abc", "true", "1_0", "%20%201", "%D9%A3", "99999999999999999999999", "0"])
@pytest.mark.parametrize("action", ["extend", "reboot", "release"])
def test_desktop_actions_with_an_id_that_is_not_one_are_404_no_such_desktop(api, tenant_member, pk, action):
    """Regression: ``POST /api/desktops/{abc|true}/{extend,reboot,release}/`` raised ValueError in
    allocations/services/access.py; ``int()`` also took " 1", "1_0" and Arabic-Indic digits as ids."""
    response = api.as_user(tenant_member).post(f"/api/desktops/{pk}/{action}/", {"hours": 1}, format="json")
    assert response.status_code == 404
    assert "No such desktop" in _error(response)["message"]


def test_desktop_id_accepts_only_ascii_digits_in_range():
    from allocations.services.access import desktop_id
    from core.limits import MAX_ID

    assert desktop_id("42") == 42 and desktop_id(42) == 42
    for bad in ("abc", "true", True, " 4", "1_0", "٣", "-1", "0", str(MAX_ID + 1), "1" * 40, None):
        assert desktop_id(bad) is None, bad


# --- instants -------------------------------------------------------------------------------------

OUT_OF_RANGE = "9999-12-31T23:59:59-23:59"


def test_parse_instant_refuses_an_instant_beyond_year_9999_in_utc():
    with pytest.raises(InvalidInstant, match="out of range"):
        parse_instant(OUT_OF_RANGE)
    with pytest.raises(InvalidInstant, match="out of range"):
        parse_instant("0001-01-01T00:00:00+23:59")
    with pytest.raises(InvalidInstant, match="ISO date"):
        parse_instant("2026-02-30")
    assert parse_instant("2026-11-01T08:00Z").isoformat() == "2026-11-01T08:00:00+00:00"
    assert parse_instant("2026-11-01").tzinfo is not None


def test_audit_api_since_out_of_range_is_a_400_in_words(api, auditor):
    """Regression: ``since=9999-12-31T23:59:59-23:59`` on the audit log was an OverflowError (a 500)."""
    response = api.as_user(auditor).get("/api/audit-events/", {"since": OUT_OF_RANGE})
    assert response.status_code == 400
    assert "out of range" in _error(response)["fields"]["since"][0]
    response = api.as_user(auditor).get("/api/audit-events/", {"until": "not a date"})
    assert response.status_code == 400


def test_audit_page_since_out_of_range_shows_the_problem(auditor):
    """Regression: ``/audit/?since=9999-12-31T23:59:59-23:59`` was a 500 page."""
    client = Client()
    client.force_login(auditor)
    response = client.get("/audit/", {"since": OUT_OF_RANGE})
    assert response.status_code == 400  # issue 16: bad input is a 400, the page still shown with the words
    assert "out of range" in response.content.decode()


def test_audit_api_since_accepts_dates_and_date_times(api, auditor):
    for value in ("2026-11-01", "2026-11-01T08:00Z", "2026-11-01T08:00:00+02:00"):
        assert api.as_user(auditor).get("/api/audit-events/", {"since": value}).status_code == 200, value


def test_usage_start_out_of_range_is_a_400(api, platform_admin):
    response = api.as_user(platform_admin).get(
        "/api/usage/", {"start": "2026-01-01", "end": OUT_OF_RANGE, "format": "json"}
    )
    assert response.status_code == 400
    assert "years 1 to 9999" in _error(response)["message"]
