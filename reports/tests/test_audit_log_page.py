"""The audit log page and API (issue 16): changes as ``field: before → after``, filters as widgets,
keyset paging on ``seq`` (never OFFSET), and an event's own page with its chain state."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils.http import urlencode

from audit import services as audit
from audit.checkpoints import checkpoint
from audit.models import AuditEvent
from audit.tests.tampering import raw
from reports.changes import change_lines

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_value_lists():
    """The verbs and object types present are cached for minutes; each test starts without them."""
    cache.clear()
    yield
    cache.clear()


def record(verb="thing.changed", n=1, **extra):
    for _ in range(n):
        with transaction.atomic():
            audit.record(verb, actor=None, object_type=extra.pop("object_type", "test.thing"), **extra)


def seqs(page_html: str) -> list[int]:
    import re

    return [int(s) for s in re.findall(r'<tr data-seq="(\d+)"', page_html)]


# --- changes as people read them ---


def test_change_lines_read_field_before_arrow_after_with_nested_values_flattened():
    lines = change_lines(
        {"max_desktops": 2, "limits": {"A40-8Q": 1}, "note": None},
        {"max_desktops": 4, "limits": {"A40-8Q": 3}, "tags": ["a", "b"], "note": None},
    )
    assert [(x.field, x.kind) for x in lines] == [
        ("max_desktops", "changed"),
        ("limits.A40-8Q", "changed"),
        ("tags", "added"),
    ]  # "note" did not change: left out
    assert (lines[0].before.full, lines[0].after.full) == ("2", "4")
    assert lines[2].after.full == "a, b"
    removed = change_lines({"name": "gpu-1", "online": True}, None)
    assert [(x.field, x.kind, x.before.full) for x in removed] == [
        ("name", "removed", "gpu-1"),
        ("online", "removed", "yes"),
    ]


def test_a_long_value_is_cut_with_the_whole_of_it_one_click_away(client, auditor):
    long = "x" * 400
    record(before={"description": "short"}, after={"description": long})
    client.force_login(auditor)
    page = client.get("/audit/").content.decode()
    assert '<details class="long-value"><summary>' + "x" * 120 + "…" in page
    assert "<code>" + long + "</code>" in page


def test_the_audit_page_renders_changes_as_field_before_arrow_after_not_python_dicts(client, auditor):
    """Reproduction: the page showed ``{'max_desktops': 2}`` beside ``{'max_desktops': 4}``."""
    record(
        "quota.updated",
        before={"max_desktops": 2, "limits": {"A40-8Q": 1}},
        after={"max_desktops": 4, "limits": {"A40-8Q": 3}},
    )
    client.force_login(auditor)
    page = client.get("/audit/", {"verb": "quota.updated"}).content.decode()
    assert "{&#x27;max_desktops&#x27;" not in page and "{'max_desktops'" not in page
    text = " ".join(page.split())
    arrow = '<span class="arrow" aria-label="changed to">→</span>'
    field = '<span class="field">max_desktops</span>'
    assert f'{field}: <span class="before">2</span> {arrow} <span class="after">4</span>' in text
    assert '<span class="field">limits.A40-8Q</span>' in text


# --- filters as widgets ---


def test_filters_are_widgets_with_the_values_present_and_pickers(client, auditor, tenant):
    record("host.created", object_type="inventory.host")
    record("quota.updated", object_type="allocations.quota")
    client.force_login(auditor)
    page = client.get("/audit/").content.decode()
    assert 'type="datetime-local" name="since"' in page and 'type="datetime-local" name="until"' in page
    assert '<select name="verb"' in page and '<option value="host.created">host.created</option>' in page
    assert '<select name="object_type"' in page and '<option value="inventory.host">' in page
    assert 'list="audit-actors"' in page and '<option value="auditor">' in page
    assert '<select name="tenant_id"' in page and f'<option value="{tenant.pk}">Acme Research</option>' in page


def test_a_local_date_range_is_read_in_the_persons_zone_and_compared_in_utc(client, auditor):
    from datetime import UTC, datetime

    record("thing.early")
    record("thing.late")
    early, late = AuditEvent.objects.filter(verb__startswith="thing.").order_by("seq")
    table = AuditEvent._meta.db_table
    raw(
        (f"UPDATE {table} SET occurred_at = %s WHERE id = %s", [datetime(2026, 11, 1, 7, 30, tzinfo=UTC), early.pk]),
        (f"UPDATE {table} SET occurred_at = %s WHERE id = %s", [datetime(2026, 11, 1, 8, 30, tzinfo=UTC), late.pk]),
    )
    client.force_login(auditor)
    client.cookies["tz"] = "Asia/Kolkata"  # UTC+05:30 all year: 13:30 there is 08:00 UTC
    page = client.get("/audit/", {"since": "2026-11-01T13:30", "verb_prefix": "thing."}).content.decode()
    assert seqs(page) == [late.seq]
    assert 'value="2026-11-01T13:30"' in page and "From (IST)" in page
    # the links (exports, pages) carry the UTC instant it meant: the same wherever they are opened
    assert "/api/exports/audit-events/?since=2026-11-01T08%3A00%3A00Z&amp;verb_prefix=thing.&amp;format=csv" in page
    # an instant with a zone in a shared URL is shown in the reader's zone
    page = client.get("/audit/", {"since": "2026-11-01T08:00Z", "verb_prefix": "thing."}).content.decode()
    assert 'value="2026-11-01T13:30"' in page and seqs(page) == [late.seq]
    bad = client.get("/audit/", {"since": "yesterday"})
    assert bad.status_code == 400 and "Expected an ISO date" in bad.content.decode()


# --- keyset paging: by position, never OFFSET ---


def walk_pages(client, params, direction="before") -> list[list[int]]:
    """Every page from the newest, following the Older links (the page's own), as positions."""
    import re

    pages, url = [], "/audit/?" + urlencode(params)
    while url:
        page = client.get(url).content.decode()
        pages.append(seqs(page))
        found = re.search(r'<a rel="next" href="([^"]+)"', page)
        url = "/audit/" + found.group(1).replace("&amp;", "&") if found else None
    return pages


def test_keyset_pages_cover_every_event_once_across_pages_and_with_filters(client, auditor, settings, monkeypatch):
    from reports import views

    monkeypatch.setattr(views, "PAGE_SIZE", 7)
    for i in range(40):
        record("thing.even" if i % 2 == 0 else "thing.odd", object_id=str(i))
    client.force_login(auditor)
    everything = list(AuditEvent.objects.order_by("-seq").values_list("seq", flat=True))
    pages = walk_pages(client, {})
    assert [s for p in pages for s in p] == everything  # newest first, no duplicate, no gap
    assert all(len(p) == 7 for p in pages[:-1]) and len(pages) == -(-len(everything) // 7)
    even = list(AuditEvent.objects.filter(verb="thing.even").order_by("-seq").values_list("seq", flat=True))
    pages = walk_pages(client, {"verb": "thing.even"})
    assert [s for p in pages for s in p] == even and len(pages) == 3  # 20 events: 7 + 7 + 6
    # back to newer events from the last page: the same pages, in reverse
    import re

    page = client.get("/audit/", {"verb": "thing.even", "before": pages[-1][0] + 1}).content.decode()
    assert seqs(page) == pages[-1]
    newer = re.search(r'<a rel="prev" href="\?([^"]+)"', page).group(1).replace("&amp;", "&")
    assert "verb=thing.even" in newer  # the filters stay in every link: a shareable address
    assert seqs(client.get("/audit/?" + newer).content.decode()) == pages[-2]


def test_a_deep_keyset_page_is_read_with_limit_and_no_offset(client, auditor):
    record(n=30)
    client.force_login(auditor)
    middle = AuditEvent.objects.order_by("seq").values_list("seq", flat=True)[15]
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/audit/", {"before": middle, "verb": "thing.changed"})
    assert response.status_code == 200
    reads = [q["sql"] for q in captured.captured_queries if "audit_auditevent" in q["sql"]]
    assert reads and not any("OFFSET" in sql.upper() for sql in reads), reads
    assert any("LIMIT 51" in sql for sql in reads)
    assert not any("COUNT(" in sql.upper() for sql in reads)  # no page count over millions of rows


def test_a_malformed_cursor_is_refused_in_words(client, api, auditor):
    client.force_login(auditor)
    bad = client.get("/audit/", {"before": "abc"})
    assert bad.status_code == 400 and "a whole number" in bad.content.decode()
    both = api.as_user(auditor).get("/api/audit-events/", {"before": 5, "after": 2})
    assert both.status_code == 400 and "not both" in both.json()["error"]["message"]
    mixed = api.as_user(auditor).get("/api/audit-events/", {"before": 5, "page": 2})
    assert mixed.status_code == 400 and "page cannot be combined" in mixed.json()["error"]["message"]


def test_the_api_pages_by_cursor_with_next_and_previous_links_and_keeps_page_numbers(api, auditor):
    record("thing.changed", n=12)
    client = api.as_user(auditor)
    expected = list(AuditEvent.objects.filter(verb="thing.changed").order_by("-seq").values_list("seq", flat=True))
    got, url, pages = [], "/api/audit-events/?verb=thing.changed&page_size=5&before=", 0
    while url:
        with CaptureQueriesContext(connection) as captured:
            body = client.get(url).json()
        assert not any("OFFSET" in q["sql"].upper() for q in captured.captured_queries)
        assert "count" not in body
        got += [row["seq"] for row in body["results"]]
        url, pages = body["next"], pages + 1
    assert got == expected and pages == 3
    last = client.get(f"/api/audit-events/?verb=thing.changed&page_size=5&before={expected[-1] + 1}").json()
    newer = client.get(last["previous"]).json()
    assert [r["seq"] for r in newer["results"]] == expected[6:11] and "verb=thing.changed" in last["previous"]
    legacy = client.get("/api/audit-events/", {"verb": "thing.changed", "page": 2, "page_size": 5}).json()
    assert legacy["count"] == 12 and len(legacy["results"]) == 5  # ?page= works as before


# --- an event's own page ---


def test_an_events_page_shows_its_fields_chain_position_and_that_it_verifies(client, auditor, settings, tmp_path):
    settings.PORTAL_AUDIT_ANCHOR = str(tmp_path / "anchor.log")
    record("quota.updated", before={"max_desktops": 2}, after={"max_desktops": 4}, object_id="7")
    event = AuditEvent.objects.get(verb="quota.updated")
    record(n=2)
    checkpoint()
    client.force_login(auditor)
    page = " ".join(client.get(f"/audit/events/{event.seq}/").content.decode().split())
    assert "✔ This event verifies" in page
    for text in (event.hash, event.prev_hash, f"<dd>{event.seq}</dd>", 'max_desktops</span>: <span class="before">2'):
        assert text in page
    assert "✔ Its stored hash matches its content" in page
    assert "Signed checkpoint 1" in page and "link up to the hash it signed" in page
    assert "The checkpoint is in the anchor outside the database" in page
    assert client.get("/audit/events/99999/").status_code == 404


def test_an_edited_events_page_says_it_does_not_verify(client, auditor):
    record(n=3)
    event = AuditEvent.objects.order_by("seq")[1]
    raw((f"UPDATE {AuditEvent._meta.db_table} SET verb = %s WHERE id = %s", ["thing.forged", event.pk]))
    client.force_login(auditor)
    page = client.get(f"/audit/events/{event.seq}/").content.decode()
    assert "✘ This event does not verify" in page and "it was edited after it was written" in page
    assert "No signed checkpoint covers it yet" in page


@pytest.mark.parametrize(
    "persona, status", [("platform_admin", 200), ("auditor", 200), ("tenant_member", 403), ("outsider", 403)]
)
def test_only_operators_open_the_audit_pages(client, personas, persona, status):
    record()
    seq = AuditEvent.objects.latest("seq").seq
    client.force_login(personas[persona])
    for url in ("/audit/", f"/audit/events/{seq}/", "/reports/usage/"):
        assert client.get(url).status_code == status, url
    client.logout()
    assert client.get(f"/audit/events/{seq}/").status_code == 302  # to the sign-in page
