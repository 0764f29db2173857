from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from inventory.models import VGPUProfile
from inventory.services.catalog import CatalogError, load_catalog

HEADER = "board,board_framebuffer_gib,profile,series,framebuffer_mib,max_per_gpu,mig_backed,source\n"
GOOD = [
    "A40,48,A40-8Q,Q,8192,6,no,test\n",
    "A40,48,A40-24Q,Q,24576,2,no,test\n",
    "A100,40,A100-1-5C,C,5120,7,yes,test\n",
]


def write(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "catalog.csv"
    path.write_text(header + "".join(rows))
    return path


@pytest.mark.django_db
def test_seed_profiles_loads_the_shared_catalog_and_is_idempotent(capsys):
    if not settings.PROFILE_CATALOG.exists():
        pytest.skip(f"{settings.PROFILE_CATALOG} is not beside the checkout")
    rows = settings.PROFILE_CATALOG.read_text().strip().splitlines()[1:]
    call_command("seed_profiles")
    assert VGPUProfile.objects.count() == len(rows)
    a40 = VGPUProfile.objects.get(name="A40-8Q")
    assert (a40.board, a40.framebuffer_mib, a40.max_per_gpu, a40.series) == ("A40", 8192, 6, "Q")
    assert a40.board_framebuffer_mib == 48 * 1024
    assert VGPUProfile.objects.get(name="A100-1-5C").mig_backed is True
    first_events = AuditEvent.objects.filter(verb="vgpu_catalog.loaded").count()
    capsys.readouterr()
    call_command("seed_profiles")
    assert f"0 created, 0 updated, {len(rows)} unchanged" in capsys.readouterr().out
    assert VGPUProfile.objects.count() == len(rows)
    assert AuditEvent.objects.filter(verb="vgpu_catalog.loaded").count() == first_events == 1


@pytest.mark.django_db
def test_changed_row_updates_the_profile(tmp_path):
    load_catalog(write(tmp_path, *GOOD))
    result = load_catalog(write(tmp_path, GOOD[0].replace(",6,", ",5,"), *GOOD[1:]))
    assert result.updated == ["A40-8Q"] and result.unchanged == 2
    assert VGPUProfile.objects.get(name="A40-8Q").max_per_gpu == 5


@pytest.mark.django_db
def test_profiles_missing_from_the_file_are_kept_and_reported(tmp_path):
    load_catalog(write(tmp_path, *GOOD))
    result = load_catalog(write(tmp_path, GOOD[0]))
    assert result.not_in_file == ["A100-1-5C", "A40-24Q"]
    assert VGPUProfile.objects.count() == 3


BAD_ROWS = [
    ("A40,48,A40-8Q,Q,lots,6,no,x\n", "framebuffer_mib must be a whole number"),
    ("A40,48,A40-8Q,Q,8192,0,no,x\n", "max_per_gpu must be positive"),
    ("A40,48,A40-8Q,X,8192,6,no,x\n", "series 'X' is not one of"),
    ("A40,48,A40-8Q,B,8192,6,no,x\n", "ends in Q, but series says B"),
    ("A40,48,A16-8Q,Q,8192,6,no,x\n", "does not belong to board A40"),
    ("A40,48,A40_8Q,Q,8192,6,no,x\n", "is not of the form"),
    ("A40,48,A40-8Q,Q,8192,7,no,x\n", "7 × 8192 MiB exceeds the board's 48 GiB"),
    ("A40,48,A40-8Q,Q,8192,6,maybe,x\n", "mig_backed must be yes or no"),
    ("A40,48,A40-8Q,Q,8192,6,yes,x\n", "disagrees with its name"),
    (",48,A40-8Q,Q,8192,6,no,x\n", "board is empty"),
    ("A40,48,A40-8Q,Q,8192\n", "expected 8 fields"),
    ("A40,48,A40-8Q,Q,8192,6,no,x,extra\n", "expected 8 fields"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("row,message", BAD_ROWS, ids=[m for _, m in BAD_ROWS])
def test_bad_row_rejects_the_file_with_its_line_number(tmp_path, row, message):
    path = write(tmp_path, GOOD[1], GOOD[2], row)  # the bad row is line 4
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert any(line == 4 and message in text for line, text in caught.value.problems), caught.value.problems
    assert VGPUProfile.objects.count() == 0, "nothing is written when any row is bad"
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_duplicate_profile_names_point_at_both_lines(tmp_path):
    with pytest.raises(CatalogError) as caught:
        load_catalog(write(tmp_path, GOOD[0], GOOD[1], GOOD[0]))
    assert caught.value.problems == [(4, "profile A40-8Q already defined on line 2")]


@pytest.mark.django_db
def test_command_reports_every_bad_line_and_exits_non_zero(tmp_path):
    path = write(tmp_path, BAD_ROWS[0][0], GOOD[1], BAD_ROWS[2][0])
    with pytest.raises(CommandError) as caught:
        call_command("seed_profiles", str(path))
    text = str(caught.value)
    assert "2 problem(s)" in text and "line 2:" in text and "line 4:" in text and "nothing was loaded" in text


@pytest.mark.django_db
def test_missing_columns_and_missing_file_are_clear(tmp_path):
    with pytest.raises(CatalogError, match="header lacks column"):
        load_catalog(write(tmp_path, GOOD[0], header="board,profile\n"))
    with pytest.raises(CatalogError, match="cannot open"):
        load_catalog(tmp_path / "nope.csv")
    with pytest.raises(CatalogError, match="holds no profiles"):
        load_catalog(write(tmp_path))
