"""Gunicorn settings for svc-identity (one pod = 2 cores).

Threaded workers sized for a pod with a 2-core limit: 2 processes x 4 threads. Password hashing (argon2)
is CPU-bound and releases the GIL; each process hashes one password at a time (PASSWORD_HASH_CONCURRENCY), so
two processes keep both cores busy hashing while the other threads serve database and cache work. Timeouts
stay below the pod's grace period (deploy/k8s/base/svc-identity.yaml: terminationGracePeriodSeconds 40 =
preStop sleep 5 + graceful_timeout 20 + margin).
Known limit (bench/api.py, README "Benchmarks"): a gthread worker accepts every connection waiting when it wakes
and keeps it while it is kept alive, so a few busy keep-alive connections can all land on one process (one GIL):
wrk's 8 were split 4/4 in 15 of 51 samples, up to 8/0 otherwise, and capping each worker at its thread count
(``worker_connections = threads``) served 20 % more requests per second. It is not capped here: idle
keep-alive connections of an ingress would then hold new ones in the backlog for up to ``keepalive`` seconds.
Requests waiting for a write to be visible (``?wait=``, ``Prefer: wait=``) hold a thread: at most
API_WAIT_MAX_WAITERS of the GUNICORN_THREADS (both in backend-config), and SIGTERM releases them (post_worker_init).
Prometheus multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` must be set in the environment *before* gunicorn
starts (so every worker imports prometheus_client in multiprocess mode); the directory is wiped when the
master starts and a dead worker's live gauges are dropped in ``child_exit``.
"""

import os
import sys
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:3001")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "20"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
max_requests = 5000
max_requests_jitter = 500
# The access log is written by gxbackend's RequestIdMiddleware as JSON; gunicorn's own is off.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "warning")
wsgi_app = "gxbackend.wsgi:application"
# gunicorn believes nobody's X-Forwarded-* headers: which proxies may speak for a client (address and scheme)
# is decided in one place, the app's TRUSTED_PROXY_CIDRS (gxbackend/proxies.py).
forwarded_allow_ips = ""
# gunicorn >= 25.1 opens a control socket under $HOME/.gunicorn by default: with a read-only root filesystem
# (and HOME=/nonexistent in the image) that write would fail, and nothing in the pod uses gunicornc.
control_socket_disable = True
# Workers write their Python bytecode nowhere (read-only root filesystem); temporary files go to /tmp.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR", "/tmp")  # noqa: S108 - an emptyDir in the pod


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        # Empty it rather than remove it: in the pod it is an emptyDir mount point.
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()

    # Fail fast, with the one-line message, before forking workers that would each fail the same way.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gxbackend.settings")
    from django.core.exceptions import ImproperlyConfigured

    try:
        import django

        django.setup()
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        sys.exit(2)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # Requests waiting for a write to be visible (up to API_WAIT_MAX_SECONDS, gxbackend/progress.py) answer at
    # once on SIGTERM instead of outliving graceful_timeout; then gunicorn's own handler stops the worker.
    import signal

    from gxbackend import progress

    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        progress.release_waiters()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
