import pytest


@pytest.fixture(autouse=True)
def anchor_file(settings, tmp_path):
    """Each test anchors its checkpoints in its own file (the configured anchor's default lives in var/)."""
    path = tmp_path / "anchor" / "audit-anchor.log"
    path.parent.mkdir()
    settings.PORTAL_AUDIT_ANCHOR = str(path)
    return path
