"""Settings for the GPU portal: one module, every knob read from the environment.

With no environment at all the portal runs: SQLite under ``var/``, Redis on
localhost, a secret key generated once into ``var/secret_key``. Production sets
``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY``, ``ALLOWED_HOSTS`` and
``PORTAL_HTTPS=1``. Malformed values stop start-up with the variable's name.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from pathlib import Path

from core.env import env_bool, env_choice, env_database, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/ (mode 600)."""
    configured = env_str("SECRET_KEY", "")
    if configured:
        return configured
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# Signs the audit chain's checkpoints. Give it its own value in production (and keep it away from the
# database's administrators); by default it is derived from SECRET_KEY.
AUDIT_CHECKPOINT_KEY = env_str("AUDIT_CHECKPOINT_KEY", "audit-checkpoint:" + SECRET_KEY)
# --- Audit anchor and export signing (issue 15; docs/audit.md) ---
# Where each signed checkpoint is also appended, out of the database administrators' reach: a file path
# (O_APPEND; put it on another volume, chattr +a), "syslog" (forwarded to a log host), or "off". Empty: a
# first-run default beside the data, var/audit-anchor.<database>.log (audit.anchor).
PORTAL_AUDIT_ANCHOR = env_str("PORTAL_AUDIT_ANCHOR", "")
# Signs export manifests (HMAC-SHA256), so a changed file cannot come with a recomputed digest.
PORTAL_AUDIT_EXPORT_KEY = env_str(
    "PORTAL_AUDIT_EXPORT_KEY", hmac.new(SECRET_KEY.encode(), b"portal-audit-export", hashlib.sha256).hexdigest()
)
# --- end audit anchor ---
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "axes",  # sign-in throttling (issue 15; tenancy.signin). DRF's plain-text authtoken is gone: tenancy.tokens
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # bottom to top (../shared/STYLE.md): each app imports only those listed before it
    "audit",
    "core",
    "tenancy",
    "identity",
    "inventory",
    "allocations",
    "consoles",
    "notifications",
    "bookings",
    "reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # issue 15: a control character (NUL) in the path, query or a form is 400 before anything reads it;
    # every response carries the Content-Security-Policy (core/middleware.py)
    "core.middleware.RefuseControlCharactersMiddleware",
    "core.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenancy.middleware.CurrentRequestMiddleware",  # issue 15: the actor of access changes made in the admin
    # issue 16: the zone the signed-in person chose on /account/, for core.timezones (next) to render in
    "tenancy.middleware.TimeZonePreferenceMiddleware",
    "core.timezones.TimezoneMiddleware",  # the person's zone (the tz cookie) for what the request renders
    "django.contrib.messages.middleware.MessageMiddleware",
    "tenancy.sessions.SessionExpiryMiddleware",  # issue 17: sessions: too old or idle too long -> log-in page
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "audit.middleware.RequestContextMiddleware",
    "axes.middleware.AxesMiddleware",  # issue 15: last, turns a refused sign-in into tenancy.signin's answer
]

ROOT_URLCONF = "portal.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenancy.context_processors.roles",
            ],
            "builtins": ["core.templatetags.portal_tags"],
        },
    },
]

WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

# --- Database -----------------------------------------------------------------
DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web, workers and beat are separate processes on a first run: transactions take SQLite's write lock
    # when they begin (IMMEDIATE), so a read-then-write transaction waits (timeout) instead of failing
    # with "database is locked" when another process committed in between; WAL keeps readers going.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, Celery, Channels -----------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# A task whose worker died (acks_late: never acknowledged) is redelivered once it has been unacknowledged
# this long; it must exceed the longest task plus retry countdown. Workers look for such tasks every few
# seconds (kombu's default is every ~100 s).
_VISIBILITY_S = env_int("CELERY_VISIBILITY_TIMEOUT_S", 900, minimum=5)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _VISIBILITY_S,
    "unacked_restore_interval": max(1, min(10, _VISIBILITY_S // 4)),
    "unacked_restore_throttle": 1,
    # A publisher (web request after commit, beat) whose broker is down fails within ~0.2 s instead of
    # retrying for seconds: what it sends is in the outbox (core/outbox.py), whose relay retries.
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_TASK_DEFAULT_QUEUE = "celery"


def redis_channel_layer(url: str) -> dict:
    """The Channels layer on Redis. ``socket_timeout=None``: redis-py 8 times reads out after 5 s by
    default, which races channels_redis's own 5 s blocking read and closes idle websockets
    (django/channels_redis#422)."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": url, "socket_timeout": None}]},
    }


if env_str("CHANNEL_LAYER", "redis") == "memory":
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}

# --- Auth -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# --- Sign-in throttling (issue 15; tenancy/signin.py, docs/deployment.md) ---
# After PORTAL_LOGIN_FAILURE_LIMIT failed sign-ins for one account (or PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT
# from one address, whichever accounts were tried), further attempts
# (form, admin, POST /api/auth/token/) are refused with 429, without checking the password, for
# PORTAL_LOGIN_COOLOFF_MINUTES; refusals meanwhile do not extend it. Success resets the count.
AUTHENTICATION_BACKENDS = ["tenancy.signin.SignInBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("PORTAL_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env_int("PORTAL_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username"]
# Per address (all accounts tried from it) the limit is higher: a campus NAT or a proxy puts many people
# behind one address, and one person's typos must not lock them all out (tenancy.signin.SignInBackend).
PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT = env_int("PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT", 30, minimum=1)
# axes.W006 warns that its own per-address count is off: ours (above) counts per address instead.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "tenancy.signin.lockout_response"
AXES_VERBOSE = False
# Behind a reverse proxy every client arrives from the proxy's address: count per address by the last
# X-Forwarded-For entry (the one the proxy appended) instead, or the first wrong passwords lock out everyone.
AXES_CLIENT_IP_CALLABLE = "tenancy.signin.client_address"
PORTAL_CLIENT_ADDRESS_FROM_PROXY = env_bool("PORTAL_BEHIND_PROXY", False)
# --- end sign-in throttling ---
# --- issue 17: identity providers (identity/config.py, docs/deployment.md "Identity providers") ---
# LDAP / Active Directory when PORTAL_LDAP_URI is set, OpenID Connect when PORTAL_OIDC_CLIENT_ID is set; local
# accounts always. The throttling backend stays first (it refuses before any password is checked); the directory
# comes before the local accounts, which are still checked when it is down.
from identity.config import LDAP_BACKEND, OIDC_BACKEND, group_mapping_default, ldap_settings, oidc_settings  # noqa: E402

_IDENTITY_LDAP, _IDENTITY_OIDC = ldap_settings(), oidc_settings()
globals().update(_IDENTITY_LDAP)
globals().update(_IDENTITY_OIDC)
AUTHENTICATION_BACKENDS[1:1] = [b for b, on in ((LDAP_BACKEND, _IDENTITY_LDAP), (OIDC_BACKEND, _IDENTITY_OIDC)) if on]
# A directory or provider group -> tenant and role, besides the mappings platform admins keep on /identity/.
PORTAL_IDENTITY_GROUP_MAPPING = group_mapping_default()
# How often the periodic sync (identity.tasks.sync_identities) re-reads directory groups.
PORTAL_IDENTITY_SYNC_S = env_int("PORTAL_IDENTITY_SYNC_S", 900, minimum=60)
# --- end identity providers ---
# --- issue 17: sessions and local passwords (tenancy/sessions.py, tenancy/passwords.py) ---
# A session ends PORTAL_SESSION_HOURS after its sign-in, or after PORTAL_SESSION_IDLE_MINUTES without a
# request (0: no idle limit); the person is sent to the log-in page with "Your session expired".
SESSION_COOKIE_AGE = env_int("PORTAL_SESSION_HOURS", 12, minimum=1) * 3600
PORTAL_SESSION_IDLE_MINUTES = env_int("PORTAL_SESSION_IDLE_MINUTES", 120, minimum=0)
# Where people reach the portal (scheme, host, any path prefix): links in mail are built from it.
PORTAL_PUBLIC_URL = env_str("PORTAL_PUBLIC_URL", "http://localhost:8000").rstrip("/")
# Password-reset mails: at most this many per account, and requests from one address, per hour.
PORTAL_PASSWORD_RESET_ACCOUNT_LIMIT = env_int("PORTAL_PASSWORD_RESET_ACCOUNT_LIMIT", 3, minimum=1)
PORTAL_PASSWORD_RESET_ADDRESS_LIMIT = env_int("PORTAL_PASSWORD_RESET_ADDRESS_LIMIT", 20, minimum=1)
PASSWORD_RESET_TIMEOUT = env_int("PORTAL_PASSWORD_RESET_HOURS", 2, minimum=1) * 3600
# --- end issue 17: sessions ---
# --- issue 17: mail and notifications (notifications/; docs/deployment.md) ---
# Outgoing mail (notifications, invitations, password resets) through this SMTP server. Mail is queued and
# sent by the workers: a server that is down delays it (retried with backoff), never the action behind it.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_S", 20, minimum=1)
# With EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend (make run's demo, no mail server) mail is
# written here, one file per message.
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "GPU Portal <gpu-portal@localhost>")
# An invitation's set-password link works this many days (or until the password is set).
PORTAL_INVITATION_DAYS = env_int("PORTAL_INVITATION_DAYS", 7, minimum=1)
# --- end issue 17: mail ---

# --- HTTPS hardening (manage.py check --deploy) --------------------------------------
# Behind TLS (PORTAL_HTTPS=1) cookies are secure-only, HTTP redirects to HTTPS and HSTS
# is sent. The demo on http://127.0.0.1:8000 runs without them; docs/deployment.md says why.
PORTAL_HTTPS = env_bool("PORTAL_HTTPS", False)
SESSION_COOKIE_SECURE = PORTAL_HTTPS
CSRF_COOKIE_SECURE = PORTAL_HTTPS
SECURE_SSL_REDIRECT = PORTAL_HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PORTAL_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PORTAL_HTTPS
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Joining the browsers' HSTS preload list is a per-domain decision that is hard to undo,
# so it stays opt-in (SECURE_HSTS_PRELOAD=1) and its reminder is silenced (docs/deployment.md).
SILENCED_SYSTEM_CHECKS += [] if SECURE_HSTS_PRELOAD else ["security.W021"]
if env_bool("PORTAL_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- I18N, static ------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- API --------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first, so an anonymous call gets 401 with a WWW-Authenticate header, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenancy.tokens.TokenAuthentication",  # issue 15: keys stored hashed
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.api.PortalPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    # issue 15: JSON nested too deep or holding NUL is 400 (core/parsers.py); forms as DRF's defaults
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GPU Portal API",
    "DESCRIPTION": "Self-service vGPU desktops: inventory, tenants, quotas, templates and the audit trail.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc are served from the installed sidecar package: portals run on closed networks.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"ProfileSeriesEnum": "inventory.choices.ProfileSeries"},
}

# --- Portal ---------------------------------------------------------------------------
# The vGPU profile catalog that `manage.py seed_profiles` loads by default.
PROFILE_CATALOG = Path(env_str("PROFILE_CATALOG", str(BASE_DIR.parent / "shared" / "data" / "vgpu_profiles.csv")))

# Desktops. Production hosts run guests under KVM; the lab's TCG guests use "qemu".
PORTAL_DOMAIN_TYPE = env_str("PORTAL_DOMAIN_TYPE", "kvm")
PORTAL_PROVISION_TIMEOUT_S = env_int("PORTAL_PROVISION_TIMEOUT_S", 300, minimum=10)
PORTAL_STUCK_AFTER_S = env_int("PORTAL_STUCK_AFTER_S", 900, minimum=30)
# A worker building or removing a desktop renews its lease every third of this; a lease that lapsed
# (the worker died) or an order never taken up this long is queued again (allocations/services/leases.py).
PORTAL_TASK_LEASE_S = env_int("PORTAL_TASK_LEASE_S", 30, minimum=3)
PORTAL_HEARTBEAT_TIMEOUT_S = env_int("PORTAL_HEARTBEAT_TIMEOUT_S", 120, minimum=10)
PORTAL_EXPIRY_WARNING_S = env_int("PORTAL_EXPIRY_WARNING_S", 900, minimum=0)
# --- idle desktops given back (issue 18; allocations/services/idle.py) ---
# After its idle warning a desktop has this long to be used before its template's action (suspend/release).
PORTAL_IDLE_GRACE_S = env_int("PORTAL_IDLE_GRACE_S", 900, minimum=0)
# A GPU whose newest minute sample is older than this counts as unknown, never idle: nothing is reclaimed
# on missing telemetry.
PORTAL_IDLE_TELEMETRY_STALE_S = env_int("PORTAL_IDLE_TELEMETRY_STALE_S", 300, minimum=60)
# Suspending (managed save writes the guest's memory to disk) and resuming get this long on the host.
PORTAL_SUSPEND_TIMEOUT_S = env_int("PORTAL_SUSPEND_TIMEOUT_S", 300, minimum=10)
# --- end idle ---
# --- bookings (issue 18): built this long before a booked window starts; given back if not opened in time
PORTAL_BOOKING_LEAD_MINUTES = env_int("PORTAL_BOOKING_LEAD_MINUTES", 10, minimum=0)
PORTAL_BOOKING_NO_SHOW_MINUTES = env_int("PORTAL_BOOKING_NO_SHOW_MINUTES", 20, minimum=1)
# --- end bookings
# Utilization: sampled every few seconds, raw kept for hours, minute averages for weeks.
PORTAL_SAMPLE_INTERVAL_S = env_int("PORTAL_SAMPLE_INTERVAL_S", 5, minimum=1)
PORTAL_RAW_RETENTION_H = env_int("PORTAL_RAW_RETENTION_H", 6, minimum=1)
PORTAL_MINUTE_RETENTION_D = env_int("PORTAL_MINUTE_RETENTION_D", 30, minimum=1)
# Placement (allocations/placement): the policy every request uses, one per deployment. "ours" (default) packs
# best on the openb trace (bench/README.md); first-fit, best-fit, random and fgd are the published baselines.
PORTAL_PLACEMENT_POLICY = env_choice(
    "PORTAL_PLACEMENT_POLICY", "ours", ("ours", "fgd", "best-fit", "first-fit", "random")
)
# What one vCPU weighs to the scheduler, in milli-cores (host cpu_cores count vCPUs too). 1000 on real fleets;
# the trace replay's own database counts trace milli-cores as vCPUs and sets 1.
PORTAL_PLACEMENT_VCPU_MILLI = env_int("PORTAL_PLACEMENT_VCPU_MILLI", 1000, minimum=1)
# "ours" breaks its last ties in each process's own random order, so web workers deciding at once rarely
# collide on one slot; 0 breaks them by host name (reproducible choices, as the tests use).
PORTAL_PLACEMENT_SPREAD_TIES = env_bool("PORTAL_PLACEMENT_SPREAD_TIES", True)
# Consoles (consoles/): single-use tickets live this long; a console without input this long is closed (the
# person is warned PORTAL_CONSOLE_IDLE_WARNING_S before); a host's console relay is at Host.console_relay or
# here; grants to relays are signed with PORTAL_CONSOLE_RELAY_KEY (default: derived from SECRET_KEY, so a
# relay that runs with the deployment's settings agrees; set it where relays do not get SECRET_KEY).
PORTAL_CONSOLE_TICKET_TTL_S = env_int("PORTAL_CONSOLE_TICKET_TTL_S", 30, minimum=5)
PORTAL_CONSOLE_IDLE_MINUTES = env_int("PORTAL_CONSOLE_IDLE_MINUTES", 30, minimum=1)
PORTAL_CONSOLE_IDLE_WARNING_S = env_int("PORTAL_CONSOLE_IDLE_WARNING_S", 60, minimum=5)
PORTAL_CONSOLE_RELAY = env_str("PORTAL_CONSOLE_RELAY", "127.0.0.1:5800")
PORTAL_CONSOLE_RELAY_KEY = env_str(
    "PORTAL_CONSOLE_RELAY_KEY", hmac.new(SECRET_KEY.encode(), b"portal-console-relay", hashlib.sha256).hexdigest()
)
# Ownership of host state: every domain the portal defines names this deployment, its host and its desktop in
# its metadata, and a host's reconciler touches only what names its own deployment and host. Default: derived
# from SECRET_KEY (every process of one deployment agrees; two deployments with different keys differ). Set it
# explicitly when deployments might share a key, or to keep it across a SECRET_KEY rotation.
PORTAL_DEPLOYMENT_ID = env_str(
    "PORTAL_DEPLOYMENT_ID", hmac.new(SECRET_KEY.encode(), b"portal-deployment", hashlib.sha256).hexdigest()[:16]
)
# A started guest is "running" once it says so (the lab guest's ready banner, the qemu guest agent on real
# hosts) within this many seconds; otherwise its desktop fails with the reason.
PORTAL_GUEST_READY_TIMEOUT_S = env_int("PORTAL_GUEST_READY_TIMEOUT_S", 120, minimum=5)
# Prometheus scrapers send "Authorization: Bearer <this>"; empty: only signed-in operators may read /metrics.
PORTAL_METRICS_TOKEN = env_str("PORTAL_METRICS_TOKEN", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # issue 15: refusals (4xx) and database outages (503) are one line each, without a traceback
    "filters": {"one_line_refusals": {"()": "core.logs.OneLineRefusals"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django.request": {"filters": ["one_line_refusals"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
