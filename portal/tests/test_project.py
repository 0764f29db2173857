"""Project-wide checks: schema, deploy checks, error pages, health, query counts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_openapi_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    paths = schema["paths"]
    for endpoint in ("hosts", "gpus", "vgpu-profiles", "tenants", "quotas", "memberships", "templates", "audit-events"):
        assert f"/api/{endpoint}/" in paths, endpoint
    assert "post" not in paths["/api/audit-events/"]
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])


@pytest.mark.django_db
def test_schema_and_docs_pages_are_served(client, auditor):
    client.force_login(auditor)
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content and b"cdn.jsdelivr" not in docs.content


def _deploy_check(**env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "PORTAL_HTTPS")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_check_is_clean_behind_https():
    result = _deploy_check(PORTAL_HTTPS="1", SECRET_KEY="k" * 30 + "Zq9-x" * 10, ALLOWED_HOSTS="portal.example")
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_check_without_https_warns_only_about_https():
    """The plain-HTTP demo keeps exactly the warnings docs/deployment.md lists."""
    result = _deploy_check(SECRET_KEY="k" * 30 + "Zq9-x" * 10)
    found = {word.strip(":") for word in (result.stdout + result.stderr).split() if word.startswith("(security.")}
    assert found == {"(security.W004)", "(security.W008)", "(security.W012)", "(security.W016)"}
    documented = (ROOT / "docs" / "deployment.md").read_text()
    for code in found:
        assert code.strip("()").split(".")[1] in documented


@pytest.mark.django_db
def test_unknown_api_path_is_json_404(client, auditor):
    client.force_login(auditor)
    response = client.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == 404


@pytest.mark.django_db
def test_missing_row_is_json_404(api, auditor):
    response = api.as_user(auditor).get("/api/hosts/999999/")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Not found (it does not exist or you may not see it)."


@pytest.mark.django_db
def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_compose_file_runs_the_asgi_app_worker_and_beat():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "beat", "redis", "postgres"} <= set(services)
    assert "portal.asgi:application" in services["web"]["command"]
    assert services["worker"]["command"][:3] == ["celery", "-A", "portal"]
    assert "beat" in services["beat"]["command"]
    from portal.asgi import application  # the module the web service serves imports cleanly

    assert application is not None


@pytest.mark.django_db
def test_metrics_need_a_token_or_an_operator(client, tenant_member, auditor, settings):
    assert client.get("/metrics").status_code == 401
    client.force_login(tenant_member)
    assert client.get("/metrics").status_code == 401
    client.force_login(auditor)
    body = client.get("/metrics").content.decode()
    assert "# TYPE portal_desktops gauge" in body and 'portal_desktops{status="running"} 0' in body
    settings.PORTAL_METRICS_TOKEN = "s3cret-token"
    anonymous = type(client)()
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200


def _url_names(patterns, namespace=""):
    """Every route's qualified name, once per pattern; DRF's format-suffix twins (``.json``) left out."""
    from django.urls import URLPattern, URLResolver

    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _url_names(entry.url_patterns, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            pattern = str(entry.pattern)
            if "(?P<format>" not in pattern and "drf_format_suffix" not in pattern:
                yield f"{namespace}{entry.name}"


def test_no_two_routes_share_a_name():
    """Regression (issue 16, found by the browser test): the template page's Retire form posted to
    /api/templates/<id>/retire/ because the page route and the API router's action were both named
    "template-retire", and ``{% url %}`` picked the API's. Every route name must be unique."""
    from collections import Counter

    from django.urls import get_resolver

    names = Counter(_url_names(get_resolver().url_patterns))
    assert [name for name, count in names.items() if count > 1] == []
