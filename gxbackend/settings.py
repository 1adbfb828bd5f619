"""Django settings, read from the environment only (docs/DESIGN.md §6).

With ``DEBUG`` off (the default) the process refuses to start, with one line naming the variable, when a
required value is missing or malformed. With no ``DATABASE_URL`` the project runs on a SQLite file and with
no ``REDIS_URL`` on a local-memory cache: the embedded default of ``make run``. Every variable is listed in
the README.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from gxbackend.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_secret,
    env_str,
    parse_database_url,
    validate_redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("GX_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)

# Only development may fall back to a throwaway key; production must bring its own (≥ 50 characters).
SECRET_KEY = env_secret("DJANGO_SECRET_KEY", required=not DEBUG, min_length=50,
                        default="insecure-development-only-secret-key-do-not-use-in-production-0123456789")
JWT_SECRET = env_secret("JWT_SECRET", required=not DEBUG, min_length=32,
                        default="insecure-development-only-jwt-secret-0123456789")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else [])
if not ALLOWED_HOSTS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("ALLOWED_HOSTS is required when DEBUG is off: a comma-separated list of host names")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by the app (whitenoise), never from a CDN
    "django_prometheus",
    "gxbackend",
    "identity",
    "outbox",
    "projector",
]

MIDDLEWARE = [
    "gxbackend.middleware.RequestIdMiddleware",
    "gxbackend.proxies.TrustedProxyMiddleware",
    "gxbackend.metrics.HttpMetricsMiddleware",
    "gxbackend.middleware.ApiJsonErrorsMiddleware",
    "gxbackend.middleware.InternalEndpointsMiddleware",
    "gxbackend.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "gxbackend.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gxbackend.urls"
WSGI_APPLICATION = "gxbackend.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------
# URLs carry passwords: like the other secrets they may come from a mounted file (DATABASE_URL_FILE).
DATABASE_URL = env_secret("DATABASE_URL", required=False)
if DATABASE_URL:
    _db = parse_database_url("DATABASE_URL", DATABASE_URL)
    _db["OPTIONS"].setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 3, minimum=1))
    # A fresh connection per request was measured 5.6x slower here: keep connections, health-checked.
    _db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 300, minimum=0)
    _db["CONN_HEALTH_CHECKS"] = True
    DATABASES = {"default": _db}
else:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DATABASE_URL is required when DEBUG is off: postgres://user:pass@host:5432/db")
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "gxbackend.sqlite3"),
            # The API, the submitter, the projector and devnet share this file in `make run`: WAL lets readers
            # run beside the one writer, IMMEDIATE takes the write lock up front (no upgrade deadlocks) and the
            # busy timeout makes writers queue instead of failing.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
# SQLite (development only) cannot enforce IdempotencyRecord's NULLS NOT DISTINCT constraint; PostgreSQL does.
SILENCED_SYSTEM_CHECKS = [] if IS_POSTGRES else ["models.W047"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (throttles, lockouts) ------------------------------------------------------------------------
REDIS_URL = env_secret("REDIS_URL", required=False)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "gxbackend.cache.GxRedisCache",
            "LOCATION": validate_redis_url("REDIS_URL", REDIS_URL),
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "gx"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "gx"}}

# --- Auth -----------------------------------------------------------------------------------------------
AUTH_USER_MODEL = "identity.User"
# The admin logs in through the API's rules: the canonical email, the (email, IP) lockout, the per-IP login rate.
AUTHENTICATION_BACKENDS = ["identity.backends.EmailBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = [
    "identity.hashers.TunedArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
# Password hashes (64 MiB each) one process runs at once; the rest wait. 1 per gunicorn worker = one per core.
PASSWORD_HASH_CONCURRENCY = env_int("PASSWORD_HASH_CONCURRENCY", 1, minimum=1, maximum=64)

# --- Security -------------------------------------------------------------------------------------------
# Proxies are trusted by network, never by what a client writes (gxbackend/proxies.py): X-Forwarded-For and
# X-Forwarded-Proto count only when the direct peer is inside TRUSTED_PROXY_CIDRS (default: none). Django's own
# SECURE_PROXY_SSL_HEADER would believe any client, so it stays unset; TrustedProxyMiddleware sets the scheme.
TRUSTED_PROXY_CIDRS = env_networks("TRUSTED_PROXY_CIDRS")
if os.environ.get("TRUSTED_PROXY_COUNT"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT is no longer read: list the proxies' networks in "
                               "TRUSTED_PROXY_CIDRS instead (empty: trust no proxy) and unset TRUSTED_PROXY_COUNT")
SECURE_PROXY_SSL_HEADER = None
# HSTS on HTTPS responses (browsers ignore it over plain HTTP); on by default in production, off in development.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 64 * 1024, minimum=1024)
# Login lockout per (email, client IP): after THRESHOLD failures, refuse for BASE seconds, doubling per further
# failure up to MAX; the count is forgotten WINDOW seconds after the last failure (identity/lockout.py).
LOGIN_LOCKOUT_THRESHOLD = env_int("LOGIN_LOCKOUT_THRESHOLD", 5, minimum=1)
LOGIN_LOCKOUT_BASE_SECONDS = env_int("LOGIN_LOCKOUT_BASE_SECONDS", 30, minimum=1)
LOGIN_LOCKOUT_MAX_SECONDS = env_int("LOGIN_LOCKOUT_MAX_SECONDS", 900, minimum=1)
LOGIN_LOCKOUT_WINDOW_SECONDS = env_int("LOGIN_LOCKOUT_WINDOW_SECONDS", 3600, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- I18N / static --------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
if DEBUG:
    # Development serves the admin's files from the app directories (finders); the folder only has to exist.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# --- REST framework -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Every view checks the token against the user row (session version: revocation) and its user_id claim
    # before it reaches a query; see identity.authentication.
    "DEFAULT_AUTHENTICATION_CLASSES": ["identity.authentication.ProfileJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["gxbackend.parsers.JSONParser"],  # depth-limited: deep nesting is a 400
    "DEFAULT_SCHEMA_CLASS": "gxbackend.schema.GxAutoSchema",
    "EXCEPTION_HANDLER": "gxbackend.exceptions.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "register": env_str("THROTTLE_REGISTER", "20/hour"),
        "login": env_str("THROTTLE_LOGIN", "30/min"),
        "refresh": env_str("THROTTLE_REFRESH", "60/min"),
        "logout": env_str("THROTTLE_LOGOUT", "30/min"),
        "kyc": env_str("THROTTLE_KYC", "10/hour"),
        "transfer": env_str("THROTTLE_TRANSFER", "60/min"),
    },
    # DRF's own client-address rule would read X-Forwarded-For from anyone: the throttles use identity.net instead.
    "NUM_PROXIES": 0,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GX backend API",
    "DESCRIPTION": "svc-identity: registration, login, profiles, KYC, wallets, transfers and command status.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the pinned drf-spectacular-sidecar package: same origin, works air-gapped, and the page's
    # CSP can say script-src 'self' (the split view serves its init script as a file, not inline).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_ACCESS_TTL_SECONDS", 300, minimum=30)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_REFRESH_TTL_SECONDS", 86400, minimum=60)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SECRET,
    "ISSUER": env_str("JWT_ISSUER", "gxbackend"),
    "AUDIENCE": env_str("JWT_AUDIENCE", "gx-api"),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "LEEWAY": 5,
    "TOKEN_OBTAIN_SERIALIZER": "identity.tokens.GxTokenObtainPairSerializer",
}

# --- Fabric ---------------------------------------------------------------------------------------------
# Production reads the credentials mounted from the `fabric-credentials` Secret; development defaults to the
# files devnet writes on its first start.
_FABRIC_DIR = VAR_DIR / "devnet" / "client" if DEBUG else Path("/etc/fabric")
FABRIC_PEER_ENDPOINT = env_str("FABRIC_PEER_ENDPOINT", "127.0.0.1:7051")
FABRIC_MSP_ID = env_str("FABRIC_MSP_ID", "Org1MSP")
FABRIC_CERT_PATH = env_str("FABRIC_CERT_PATH", str(_FABRIC_DIR / "cert.pem"))
FABRIC_KEY_PATH = env_str("FABRIC_KEY_PATH", str(_FABRIC_DIR / "key.pem"))
FABRIC_TLS_CA_PATH = env_str("FABRIC_TLS_CA_PATH", None if DEBUG else "/etc/fabric/ca-cert.pem")
FABRIC_TLS_SERVER_NAME = env_str("FABRIC_TLS_SERVER_NAME")
FABRIC_CHANNEL = env_str("FABRIC_CHANNEL", "gxchannel")
FABRIC_CHAINCODE = env_str("FABRIC_CHAINCODE", "gxcc")
FABRIC_EVALUATE_TIMEOUT = env_float("FABRIC_EVALUATE_TIMEOUT", 5.0, minimum=0.1)
FABRIC_ENDORSE_TIMEOUT = env_float("FABRIC_ENDORSE_TIMEOUT", 15.0, minimum=0.1)
FABRIC_SUBMIT_TIMEOUT = env_float("FABRIC_SUBMIT_TIMEOUT", 5.0, minimum=0.1)
FABRIC_COMMIT_STATUS_TIMEOUT = env_float("FABRIC_COMMIT_STATUS_TIMEOUT", 60.0, minimum=0.1)

# --- Read your own writes (gxbackend/progress.py) ------------------------------------------------------
# GET /commands/:id?wait=, ?min_block=&wait= on wallet reads and `Prefer: wait=` on POST /transfers hold a
# gunicorn thread while they wait: at most API_WAIT_MAX_WAITERS per process, fewer than its GUNICORN_THREADS
# (also read by deploy/gunicorn.conf.py), so plain requests always keep threads of their own. Beyond the bound a
# request is answered at once, as without a wait.
GUNICORN_THREADS = env_int("GUNICORN_THREADS", 4, minimum=1, maximum=256)
API_WAIT_MAX_SECONDS = env_int("API_WAIT_MAX_SECONDS", 30, minimum=1, maximum=120)
API_WAIT_MAX_WAITERS = env_int("API_WAIT_MAX_WAITERS", GUNICORN_THREADS // 2, minimum=0, maximum=255)
if API_WAIT_MAX_WAITERS and API_WAIT_MAX_WAITERS >= GUNICORN_THREADS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"API_WAIT_MAX_WAITERS={API_WAIT_MAX_WAITERS} must be below GUNICORN_THREADS="
                               f"{GUNICORN_THREADS}: waiting requests must leave threads to plain requests")

# --- Workers --------------------------------------------------------------------------------------------
OUTBOX_BATCH_SIZE = env_int("OUTBOX_BATCH_SIZE", 32, minimum=1, maximum=1000)
OUTBOX_LEASE_SECONDS = env_int("OUTBOX_LEASE_SECONDS", 60, minimum=2)  # renewed every third of it
OUTBOX_MAX_IN_FLIGHT = env_int("OUTBOX_MAX_IN_FLIGHT", 32, minimum=1, maximum=512)
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 10, minimum=1)
OUTBOX_POLL_INTERVAL = env_float("OUTBOX_POLL_INTERVAL", 1.0, minimum=0.01)
# A submitter's row writes wait up to this long to be written together (outbox.submitter.DbWriter).
OUTBOX_WRITE_LINGER_MS = env_float("OUTBOX_WRITE_LINGER_MS", 20.0, minimum=0.0)
# A submitter learns its new transactions' commit statuses from one filtered-block stream (the peer's Deliver
# service, ACL event/FilteredBlock = channel Readers) instead of a signed CommitStatus call each; off: CommitStatus.
OUTBOX_COMMITS_FROM_BLOCKS = env_bool("OUTBOX_COMMITS_FROM_BLOCKS", True)
# Retry delay = min(max, base * 2**(attempts-1)), jittered to 50–100 % of that (outbox.services.backoff_seconds).
OUTBOX_BACKOFF_BASE_SECONDS = env_float("OUTBOX_BACKOFF_BASE_SECONDS", 1.0, minimum=0.01)
OUTBOX_BACKOFF_MAX_SECONDS = env_float("OUTBOX_BACKOFF_MAX_SECONDS", 300.0, minimum=0.01)
# On SIGTERM the submitter waits this long for in-flight commands, then hands their leases back (< pod grace).
OUTBOX_SHUTDOWN_GRACE_SECONDS = env_float("OUTBOX_SHUTDOWN_GRACE_SECONDS", 20.0, minimum=0.0)
SUBMITTER_METRICS_PORT = env_int("SUBMITTER_METRICS_PORT", 9090, minimum=0, maximum=65535)
PROJECTOR_METRICS_PORT = env_int("PROJECTOR_METRICS_PORT", 9091, minimum=0, maximum=65535)
WORKER_METRICS_HOST = env_str("WORKER_METRICS_HOST", "0.0.0.0")  # noqa: S104 - pods are scraped from outside
WORKER_HEARTBEAT_TIMEOUT = env_float("WORKER_HEARTBEAT_TIMEOUT", 60.0, minimum=1.0)
PROJECTION_LAG_THRESHOLD_BLOCKS = env_int("PROJECTION_LAG_THRESHOLD_BLOCKS", 100, minimum=0)
# Opt-in: the API's /readyz answers 503 while the lag exceeds the threshold. Off by default, since a stuck
# projector would then take every API pod out of the Service although login, registration and profile reads
# need no projection; the lag is in the /readyz body, in projector_lag_blocks and in the GxProjectorLag alert.
READYZ_FAIL_ON_PROJECTION_LAG = env_bool("READYZ_FAIL_ON_PROJECTION_LAG", False)
# Projector knobs (projector/worker.py): chain-height poll, retry backoff after a failure, standby lock poll,
# and the age after which /readyz calls the stored chain height stale (still used, flagged in the message).
PROJECTOR_HEIGHT_POLL_SECONDS = env_float("PROJECTOR_HEIGHT_POLL_SECONDS", 5.0, minimum=0.05)
PROJECTOR_RETRY_BASE_SECONDS = env_float("PROJECTOR_RETRY_BASE_SECONDS", 1.0, minimum=0.01)
PROJECTOR_RETRY_MAX_SECONDS = env_float("PROJECTOR_RETRY_MAX_SECONDS", 30.0, minimum=0.01)
PROJECTOR_STANDBY_POLL_SECONDS = env_float("PROJECTOR_STANDBY_POLL_SECONDS", 2.0, minimum=0.05)
PROJECTOR_HEIGHT_STALE_SECONDS = env_float("PROJECTOR_HEIGHT_STALE_SECONDS", 120.0, minimum=1.0)

# --- Logging: one JSON line per event on stdout ---------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "gxbackend.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "gxbackend.logging.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Our access log line replaces Django's; django.request would log 4xx with the request attached.
        "django.request": {"level": "ERROR", "propagate": True},
        "django.server": {"level": "WARNING", "propagate": True},
        "django.db.backends": {"level": "WARNING", "propagate": True},
    },
}

PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
