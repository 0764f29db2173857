"""Issue 19: the production shape serves the portal from several ASGI processes behind a reverse proxy
that upgrades websockets (the two-process behaviour itself: allocations/tests/test_integration_web_tier.py)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_several_web_processes_behind_a_proxy_that_upgrades_websockets():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    web, proxy = services["web"], services["proxy"]
    replicas = re.fullmatch(r"\$\{WEB_REPLICAS:-(\d+)\}", str(web["deploy"]["replicas"]))
    assert replicas and int(replicas.group(1)) >= 2
    assert "ports" not in web  # reached through the proxy only
    assert "--proxy-headers" in web["command"]
    assert proxy["ports"] == ["8000:80"] and "nginx" in proxy["image"]
    mount = next(v for v in proxy["volumes"] if v.endswith("/etc/nginx/conf.d/default.conf:ro"))
    conf = (ROOT / mount.split(":")[0]).read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert "http://web:8000" in conf and "resolver 127.0.0.11" in conf
