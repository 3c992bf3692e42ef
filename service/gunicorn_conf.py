"""gunicorn settings, from the same FER_* variables as the app.

No ``preload_app``: TensorFlow initialised in the master hangs forked workers, so each
worker imports service.wsgi and loads its own model. ``timeout`` must exceed model load
plus warm-up. Prometheus multiprocess mode needs PROMETHEUS_MULTIPROC_DIR set before
start (scripts/serve.sh or the image sets it) and emptied (on_starting here); dead workers
are marked in child_exit.
"""

import json
import os
import shutil
import signal

import gunicorn.util

from service.config import Settings
from service.errors import code_for_status, error_body

_s = Settings.from_env()

bind = _s.bind
workers = _s.workers
if _s.worker_class not in ("gthread", "sync"):
    raise SystemExit(f"FER_WORKER_CLASS={_s.worker_class!r}: use gthread or sync")
# sync (default): one request per worker at a time, the lowest latency measured here;
# it needs a buffering proxy in front (nginx), which reads slow clients' requests in full.
# gthread: FER_THREADS requests per worker, overlapping, which dynamic batching can group.
worker_class = _s.worker_class
# FER_THREADS only with gthread: gunicorn silently runs gthread instead of sync whenever
# threads > 1, so the default (sync, FER_THREADS=4) ran 4 threads per worker.
threads = _s.threads if _s.worker_class == "gthread" else 1
timeout = _s.timeout
graceful_timeout = 30
keepalive = 5
wsgi_app = "service.wsgi:app"
accesslog = None  # the app logs one JSON line per request itself
errorlog = "-"
loglevel = _s.log_level.lower()
limit_request_line = 8190
limit_request_field_size = 8190
max_requests = 0
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicorn 25.1+ opens a control socket for gunicornc under $HOME (or XDG_RUNTIME_DIR),
# which a read-only root filesystem refuses with an error line at every start. Nothing
# here uses it: workers are managed by signals (SIGHUP reloads the model, SIGTERM stops).
control_socket_disable = True


# Requests gunicorn refuses before the app sees them (request line or header too long,
# malformed HTTP) get the service's JSON error shape and codes instead of gunicorn's HTML.
def _json_error(sock, status_int, reason, mesg):
    code = code_for_status(status_int, reason)
    body = json.dumps(error_body(code, mesg or reason, request_id="")).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


# Workers call gunicorn.util.write_error through the module: replace it there.
gunicorn.util.write_error = _json_error


def on_starting(server):
    # Multiprocess metrics files from a previous run (a restarted container keeps /tmp)
    # would be summed into this run's values: start from an empty folder.
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, exist_ok=True)


def when_ready(server):
    # gunicorn's own SIGHUP restarts every worker: cold workers loading the model while
    # requests wait. Here SIGHUP asks each live worker to load a newer model version
    # beside the one it serves and swap (service.model.registry): no worker restarts.
    def handle_hup():
        server.log.info("SIGHUP: workers check for a new model version")
        server.kill_workers(signal.SIGHUP)

    server.handle_hup = handle_hup


def post_worker_init(worker):
    # After gunicorn set the worker's own handlers (it resets SIGHUP to the default,
    # which would kill the worker).
    from service.state import state_of

    models = state_of(worker.wsgi).models
    signal.signal(signal.SIGHUP, lambda *_: models.wake())


def child_exit(server, worker):
    from service.metrics import mark_process_dead

    mark_process_dead(worker.pid)
