"""Real servers for the identity tests, started by the tests themselves: OpenLDAP's ``slapd`` with a
small directory, and an OpenID Connect provider (the Django project in ``oidc_provider/``, on
django-oauth-toolkit) as a process of its own. Each listens on an ephemeral port on 127.0.0.1, keeps
its data in a temporary directory, and is stopped (its whole process group) at teardown.

Missing ``slapd`` (``scripts/identity-servers.sh`` installs it) skips the LDAP tests with the reason,
or fails them where PORTAL_REQUIRE_VM_LAB=1 (CI), as the browser tests do for Chromium.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from core.tests.http import free_port

ROOT = Path(__file__).resolve().parents[2]
SLAPD = Path("/usr/sbin/slapd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "directory-admin-pw"
PEOPLE = f"ou=people,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
#: The directory's people: uid -> password.
LDAP_PEOPLE = {"alice": "alice-dir-pw", "bob": "bob-dir-pw", "carol": "carol-dir-pw"}
#: The directory's groups (groupOfNames): cn -> member uids.
LDAP_GROUPS = {"gpu-users": ["alice", "bob"], "gpu-admins": ["carol"]}


def require(problem: str) -> None:
    """Skip with ``problem``; fail instead where the CI asks for every real server (PORTAL_REQUIRE_VM_LAB=1)."""
    if problem:
        if os.environ.get("PORTAL_REQUIRE_VM_LAB") == "1":
            pytest.fail(f"PORTAL_REQUIRE_VM_LAB=1 but {problem}", pytrace=False)
        pytest.skip(problem)


def _stop_group(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


class Slapd:
    """An OpenLDAP server with a slapd.conf of its own (mdb database, the stock schemas), loaded with
    ``LDAP_PEOPLE`` and ``LDAP_GROUPS``. ``stop()``/``start()`` take it down and up on the same port and
    data (the "directory is down" tests)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        (workdir / "data").mkdir(parents=True)
        schemas = "\n".join(
            f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")
        )
        (workdir / "slapd.conf").write_text(
            f"""{schemas}
pidfile {workdir / "slapd.pid"}
modulepath {MODULE_DIR}
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {workdir / "data"}
index objectClass eq
index uid,cn,member eq
"""
        )

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        argv = [str(SLAPD), "-f", str(self.workdir / "slapd.conf"), "-h", f"{self.uri}/", "-d", "0"]
        self.log = open(self.workdir / "slapd.log", "ab")  # closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited {self.proc.returncode}: {(self.workdir / 'slapd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("slapd did not listen within 20 s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc)
            self.proc = None
            self.log.close()

    def connect(self):
        import ldap

        conn = ldap.initialize(self.uri)
        conn.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
        return conn

    def load(self) -> None:
        """The base entries, the people (with their passwords) and the groups."""
        import ldap
        import ldap.modlist

        conn = self.connect()

        def add(dn: str, attrs: dict) -> None:
            conn.add_s(dn, ldap.modlist.addModlist({k: [v.encode() for v in vs] for k, vs in attrs.items()}))

        add(BASE_DN, {"objectClass": ["dcObject", "organization"], "dc": ["example"], "o": ["Example"]})
        add(PEOPLE, {"objectClass": ["organizationalUnit"], "ou": ["people"]})
        add(GROUPS, {"objectClass": ["organizationalUnit"], "ou": ["groups"]})
        for uid, password in LDAP_PEOPLE.items():
            add(
                user_dn(uid),
                {
                    "objectClass": ["inetOrgPerson"],
                    "uid": [uid],
                    "cn": [uid.title()],
                    "sn": ["Example"],
                    "givenName": [uid.title()],
                    "mail": [f"{uid}@example.org"],
                    "userPassword": [password],
                },
            )
        for cn, members in LDAP_GROUPS.items():
            add(group_dn(cn), {"objectClass": ["groupOfNames"], "cn": [cn], "member": [user_dn(m) for m in members]})
        conn.unbind_s()

    def remove_member(self, group: str, uid: str) -> None:
        import ldap

        conn = self.connect()
        conn.modify_s(group_dn(group), [(ldap.MOD_DELETE, "member", [user_dn(uid).encode()])])
        conn.unbind_s()


def start_slapd(workdir: Path) -> Slapd:
    require("" if os.access(SLAPD, os.X_OK) else f"{SLAPD} is missing; scripts/identity-servers.sh installs it")
    require("" if (SCHEMA_DIR / "inetorgperson.schema").exists() else f"no LDAP schemas in {SCHEMA_DIR}")
    server = Slapd(workdir)
    try:
        server.start()
        server.load()
    except BaseException:
        server.stop()
        raise
    return server


# --- The OpenID Connect provider ---------------------------------------------------------------------

#: The provider's people: username -> (password, groups).
OIDC_PEOPLE = {"dora": ("dora-idp-pw", ["gpu-users"]), "erin": ("erin-idp-pw", [])}
OIDC_CLIENT_ID = "gpu-portal"
OIDC_CLIENT_SECRET = "gpu-portal-client-secret"


class OIDCProvider:
    """``identity/tests/oidc_provider`` (django-oauth-toolkit's OIDC provider) served by Django's
    runserver (no reloader) in its own process, with its own SQLite file and an RSA key made now;
    one confidential client (``OIDC_CLIENT_ID``) whose redirect URI is ``redirect_uri``, and the
    people of ``OIDC_PEOPLE`` with their groups."""

    def __init__(self, workdir: Path, redirect_uri: str):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (workdir / "oidc.key").write_bytes(pem)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "PORTAL_"))},
            "DJANGO_SETTINGS_MODULE": "identity.tests.oidc_provider.settings",
            "OIDC_PROVIDER_DB": str(workdir / "provider.sqlite3"),
            "OIDC_PROVIDER_KEY": str(workdir / "oidc.key"),
            "OIDC_PROVIDER_ISSUER": f"{self.base_url}/o",
            "OIDC_PROVIDER_REDIRECT_URI": redirect_uri,
            "OIDC_PROVIDER_CLIENT_ID": OIDC_CLIENT_ID,
            "OIDC_PROVIDER_CLIENT_SECRET": OIDC_CLIENT_SECRET,
            "OIDC_PROVIDER_PEOPLE": json.dumps(OIDC_PEOPLE),
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen | None = None

    def _manage(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"provider {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._manage("migrate", "--noinput", "-v0")
        self._manage("provider_setup")
        self.log = open(self.workdir / "provider.log", "ab")  # closed in stop()
        argv = [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        url = f"{self.base_url}/o/.well-known/openid-configuration"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"provider exited {self.proc.returncode}: {(self.workdir / 'provider.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"provider did not answer {url} within 60 s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc)
            self.proc = None
            self.log.close()

    def allow_redirect(self, uri: str) -> None:
        self._manage("provider_setup", "--allow-redirect", uri)

    def set_groups(self, username: str, groups: list[str]) -> None:
        self._manage("provider_setup", "--groups", f"{username}={','.join(groups)}")

    def portal_environment(self) -> dict:
        """What a deployment sets for this provider: the client, and the endpoints as
        ``manage.py oidc_discover`` reads them from the provider's discovery document."""
        from identity.config import discover

        return {
            "PORTAL_OIDC_CLIENT_ID": OIDC_CLIENT_ID,
            "PORTAL_OIDC_CLIENT_SECRET": OIDC_CLIENT_SECRET,
            "PORTAL_OIDC_NAME": "Example IdP",
            **discover(f"{self.base_url}/o"),
        }
