"""The production server: waitress on HASHDROP_HOST:HASHDROP_PORT, never exposed without a
password, logging to stderr, and stopping on SIGTERM or SIGINT with resume data saved."""
import gc
import logging
import signal
import sys

import waitress

from config import ConfigError, server_settings
from security import exposure_problem
from store import StoreError

log = logging.getLogger(__name__)

# What waitress may hold for requests the app has not seen yet (it reads a whole request, body
# and all, before the app's login check runs), whoever sends them.
MULTIPART_OVERHEAD = 64 * 1024   # boundaries and part headers around the largest upload
MAX_HEADER_BYTES = 64 * 1024     # request line and headers; a browser sends a few KiB
IN_MEMORY_BODY = 512 * 1024      # a larger body waits in a temporary file, not in memory
CONNECTION_LIMIT = 50            # open connections; a browser keeps about 6, polling included
BACKLOG = 64                     # connections the kernel queues while waitress is at its limit


def serve(create_app, environ=None):
    """Serve create_app() with waitress on HASHDROP_HOST:HASHDROP_PORT; refuse an open exposure."""
    setup_logging()
    try:
        server = server_settings(environ)
    except ConfigError as exc:
        sys.exit(str(exc))  # a port that is no port number
    problem = exposure_problem(server.host, server.password, server.trusted_proxy)
    if problem:
        sys.exit(problem)  # before create_app: no libtorrent session, no port opened
    # What is loaded by now lives as long as the process; the cyclic GC's full collections
    # scanned it all (20-45 ms each) and stalled whatever request was running then.
    gc.collect()
    gc.freeze()
    app = build(create_app)
    stop_on_signals()
    waitress.serve(app, host=server.host, port=server.port, **limits(app.config),
                   **proxy_options(server.trusted_proxy))


def setup_logging():
    """INFO and above to stderr with time, level and logger, torrentp's at WARNING."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("torrentp").setLevel(logging.WARNING)  # it logs every pause and resume at INFO


def build(create_app):
    """create_app(), or exit with its sentence when the job database or a setting is unusable."""
    try:
        return create_app()
    except StoreError as exc:
        sys.exit(str(exc))  # a damaged job database: say which file, wipe nothing
    except ConfigError as exc:
        sys.exit(str(exc))  # a setting it cannot use; a ValueError from a bug keeps its traceback


def limits(config):
    """waitress's own limits: no request body past the app's largest, no connection idle for long."""
    # waitress's defaults let anyone, logged in or not, make it spool 1 GiB per connection
    # to a temporary file and keep a silent connection for two minutes.
    largest_body = max(config["MAX_UPLOAD_BYTES"], config["MAX_REQUEST_BYTES"])
    timeout = config["IDLE_TIMEOUT"]
    return {
        "max_request_body_size": largest_body + MULTIPART_OVERHEAD,
        "max_request_header_size": MAX_HEADER_BYTES,
        "inbuf_overflow": IN_MEMORY_BODY,
        "channel_timeout": timeout,
        # How often waitress looks for idle connections: one is closed within 1.25 x the timeout.
        "cleanup_interval": max(1, timeout // 4),
        "connection_limit": CONNECTION_LIMIT,
        "backlog": BACKLOG,
    }


def proxy_options(trusted_proxy):
    """waitress's options to believe trusted_proxy's X-Forwarded-For and -Proto; none without one."""
    if not trusted_proxy:
        return {}
    # Client address and https from the proxy, so the lockout and Secure cookies work.
    return {"trusted_proxy": trusted_proxy, "clear_untrusted_proxy_headers": True,
            "trusted_proxy_headers": "x-forwarded-for x-forwarded-proto"}


def stop_on_signals():
    """SIGTERM and SIGINT stop the server through SystemExit, so the atexit shutdown runs."""
    # Python's default SIGTERM ends the process without atexit, which would skip saving
    # resume data. waitress closes its listening socket on SystemExit (no new work), then
    # the job manager saves resume data for every torrent within its timeout.
    def stop(signum, frame):
        log.info("signal %s: shutting down", signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
