"""Make hashdrop safe to expose: login, CSRF, Host checks, input limits and security headers."""
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import timedelta

from flask import (
    Blueprint, Request, current_app, flash, has_request_context, jsonify, redirect,
    render_template, request, session, url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import BadRequest, Forbidden, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.security import check_password_hash

from config import ConfigError
from jobs.durability import write_atomically

log = logging.getLogger(__name__)
bp = Blueprint("security", __name__)
csrf = CSRFProtect()

LOGIN_FAILURES = 5              # failed logins from one address within LOGIN_WINDOW ...
LOGIN_WINDOW = 15 * 60          # ... lock it out for LOCKOUT_SECONDS
LOCKOUT_SECONDS = 5 * 60
TRACKED_ADDRESSES = 10_000      # the failure table holds no more addresses than this (locked ones aside)
FAILURE_BUDGET = 100            # failed logins server-wide within LOGIN_WINDOW before every check ...
SLOW_CHECK_SECONDS = 1.0        # ... waits this long first
PASSWORD_CHECKS_AT_ONCE = 2     # password checks running at once (scrypt: ~50 ms of CPU each) ...
PASSWORD_CHECK_WAIT = 0.5       # ... and how long one waits for its turn before "busy"
MAX_SESSIONS = 100              # logins valid at once; one more ends the oldest

SECURITY_HEADERS = {
    "Content-Security-Policy": "; ".join([
        "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'",
    ]),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
BUSY_MESSAGE = "Many logins are being checked right now; try again in a few seconds."
NOT_UTF8 = "The form data is not valid UTF-8; send it as a browser does."
CSRF_MESSAGE = "The form expired or came from another site; reload the page and try again."
# What werkzeug.security.generate_password_hash produces: method$salt$hex.
PASSWORD_HASH = re.compile(r"(scrypt|pbkdf2):[^$]*\$[^$]+\$[0-9a-f]+")
# C0/C1 control characters other than tab, CR and LF, and lone surrogates (JSON can send
# "\ud800"; such a string cannot even be encoded to UTF-8 for SQLite or a magnet link).
FORBIDDEN_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
SCRIPT_HEADERS = ("X-Hashdrop", "X-Requested-With")  # headers only a script (or a preflight) sends
SAFE_NEXT = re.compile(r"/(?![/\\])[^\x00-\x20\\]*")
# The Transmission RPC (transmission.py): its X-Transmission-Session-Id handshake is its CSRF
# defence, and its clients (Sonarr, transmission-remote) log in with HTTP Basic alone.
RPC_PREFIX = "/transmission/"


def init_app(app):
    """Wire login, CSRF, the Host check, input limits and security headers into the app."""
    config = app.config  # config.load has set, checked and normalised every hashdrop setting
    config["ALLOWED_HOSTS"] = allowed_hosts(config["ALLOWED_HOSTS"])
    # Every body, and every text field of a form, is capped at MAX_REQUEST_BYTES; only the
    # paste form, which can carry .torrent files, may be larger in all (see guard()).
    config["MAX_CONTENT_LENGTH"] = config["MAX_FORM_MEMORY_SIZE"] = config["MAX_REQUEST_BYTES"]
    configure_cookie(config)
    # A token lives as long as the session: the page with the form may stay open for days.
    config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)
    config["WTF_CSRF_CHECK_DEFAULT"] = False  # guard() checks every form post itself, /api/ aside

    app.session_interface = SessionInterface()
    app.request_class = StrictRequest
    app.extensions["hashdrop.security"] = Security(
        credentials=Credentials(config["USERNAME"], config["PASSWORD"], app.secret_key)
        if config["PASSWORD"] else None,
        limiter=LoginLimiter(),
        checks=PasswordChecks(),
        sessions=SessionList(os.path.join(config["DATA_DIR"], "sessions"),
                             config["PERMANENT_SESSION_LIFETIME"].total_seconds())
        if config["PASSWORD"] else None,
    )
    app.register_blueprint(bp)
    app.before_request(guard)
    app.after_request(add_security_headers)
    app.context_processor(lambda: {"current_user": current_user()})
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(RequestEntityTooLarge, too_large)


def configure_cookie(config):
    """The session cookie: HttpOnly, SameSite=Lax, its own name, HASHDROP_SESSION_DAYS long."""
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = config["SESSION_COOKIE_SAMESITE"] or "Lax"
    if config["SESSION_COOKIE_NAME"] == "session":
        # Cookies ignore ports: another app on localhost:8000 would overwrite plain "session".
        config["SESSION_COOKIE_NAME"] = "hashdrop_session"
    config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=config["SESSION_DAYS"])
    # The cookie ends when the login does (SessionList), not a month after the last click.
    config["SESSION_REFRESH_EACH_REQUEST"] = False


@dataclass
class Security:
    credentials: "Credentials | None"
    limiter: "LoginLimiter"
    checks: "PasswordChecks"
    sessions: "SessionList | None"


def state():
    return current_app.extensions["hashdrop.security"]


# Who may connect ------------------------------------------------------------------

def is_loopback(host):
    """True for localhost and 127.0.0.0/8 or ::1, written as waitress would take them."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_problem(host, password, trusted_proxy=None):
    """Why serving on host must be refused, or None: beyond loopback a password is required."""
    if password:
        return None
    if trusted_proxy:
        return ("Refusing to start: HASHDROP_TRUSTED_PROXY is set, so people reach hashdrop "
                "through a proxy, but HASHDROP_PASSWORD is not set. Set HASHDROP_PASSWORD to a "
                "password (or a werkzeug password hash) first.")
    if is_loopback(host):
        return None
    return (f"Refusing to serve on {host}: anyone who can reach that address could start "
            "downloads and delete files. Set HASHDROP_PASSWORD to a password (or a werkzeug "
            "password hash such as scrypt:...), or serve on loopback with HASHDROP_HOST=127.0.0.1.")


def split_host(value):
    """'Example.com:8080' -> 'example.com', '[::1]:5000' -> '[::1]', '::1' -> '[::1]'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    if value.count(":") > 1:
        try:
            return f"[{ipaddress.IPv6Address(value).compressed}]"
        except ValueError:
            return value
    return value.partition(":")[0]


def allowed_hosts(names):
    """The Host names answered, in split_host's form; 0.0.0.0 and [::] are bind-all addresses, not names."""
    return {split_host(name) for name in names} - {"", "0.0.0.0", "[::]"}


def check_host():
    """A 403 when the Host header names a host not allowed: DNS rebinding, or a forgotten setting."""
    allowed = current_app.config["ALLOWED_HOSTS"]
    if "*" not in allowed and split_host(request.host) not in allowed:
        raise Forbidden(f"This server does not answer to the host name {request.host!r}. "
                        "Add it to HASHDROP_ALLOWED_HOSTS to reach hashdrop by that name.")


# Logging in -----------------------------------------------------------------------

class Credentials:
    """The one username and password; what people send is compared in constant time."""

    def __init__(self, username, password, secret_key):
        self.username = username
        self.password = password
        self._key = secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key)
        self.hashed = PASSWORD_HASH.fullmatch(password) is not None
        if self.hashed:
            try:
                check_password_hash(password, "")
            except ValueError as exc:
                raise ConfigError(f"HASHDROP_PASSWORD looks like a password hash but cannot be "
                                  f"used: {exc}") from None
        # Kept in the session: changing the username or password logs every session out.
        self.fingerprint = self._mac("session", username, password)
        self._known_good = None

    def _mac(self, *parts):
        message = "\0".join(parts).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, "sha256").hexdigest()

    def check(self, username, password):
        """True when both match; both are always compared, each in constant time."""
        user_ok = hmac.compare_digest(self._mac("user", username), self._mac("user", self.username))
        return self._password_ok(password) & user_ok

    def _password_ok(self, password):
        given = self._mac("password", password)
        if not self.hashed:
            return hmac.compare_digest(given, self._mac("password", self.password))
        # scrypt costs ~50 ms; a script sending Basic auth every second should not pay it each time.
        known = self._known_good
        if known is not None and hmac.compare_digest(given, known):
            return True
        if check_password_hash(self.password, password):
            self._known_good = given
            return True
        return False

    def session_ok(self, value):
        return isinstance(value, str) and hmac.compare_digest(value, self.fingerprint)


@dataclass
class Failures:
    times: list = field(default_factory=list)
    locked_until: float = 0.0


def address_keys(address):
    """What failed logins from address count against: the address, and its /64 for IPv6."""
    # One IPv6 subscriber gets a whole /64 (2^64 addresses); counting each address alone would
    # give them endless tries. An IPv4-mapped address is the IPv4 address it maps.
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return [address]
    if ip.version == 6 and ip.ipv4_mapped:
        return [str(ip.ipv4_mapped)]
    if ip.version == 4:
        return [str(ip)]
    network = ipaddress.IPv6Network((int(ip) >> 64 << 64, 64))
    return [str(ip), str(network)]


class LoginLimiter:
    """Failed logins per address (and IPv6 /64); too many within the window lock it out, and
    too many server-wide slow every password check."""

    def __init__(self, failures=LOGIN_FAILURES, window=LOGIN_WINDOW, lockout=LOCKOUT_SECONDS,
                 capacity=TRACKED_ADDRESSES, budget=FAILURE_BUDGET, clock=time.monotonic):
        self.failures = failures
        self.window = window
        self.lockout = lockout
        self.capacity = capacity
        self.budget = budget
        self.clock = clock
        self._lock = threading.Lock()
        self._table = OrderedDict()  # address or network -> Failures, least recently failed first
        self._recent = deque(maxlen=budget + 1)  # times of the last failures server-wide

    def __len__(self):
        with self._lock:
            return len(self._table)

    def locked_for(self, address):
        """Seconds until address may try again; 0 when it may try now."""
        now = self.clock()
        with self._lock:
            entries = [self._table.get(key) for key in address_keys(address)]
            return max([0.0, *(entry.locked_until - now for entry in entries if entry)])

    def slowed(self):
        """True while more than budget logins failed server-wide within the window."""
        with self._lock:
            return len(self._recent) > self.budget and self.clock() - self._recent[0] < self.window

    def failed(self, address):
        """Count a failed login; return the seconds address is now locked out for (0 if not)."""
        now = self.clock()
        keys = address_keys(address)
        with self._lock:
            self._recent.append(now)
            for key in keys:
                entry = self._table.pop(key, None) or Failures()
                entry.times = [t for t in entry.times if now - t < self.window] + [now]
                if len(entry.times) >= self.failures:
                    entry.times = []
                    entry.locked_until = now + self.lockout
                self._table[key] = entry
            self._trim(now, keep=keys)
            return max([0.0, *(self._table[key].locked_until - now for key in keys)])

    def succeeded(self, address):
        """Forget the failures of address (and of its /64)."""
        with self._lock:
            for key in address_keys(address):
                self._table.pop(key, None)

    def _trim(self, now, keep):
        """Forget addresses until the table fits: stale ones, then unlocked ones, oldest first."""
        # Locked ones stay even past capacity: forgetting one would give it new tries at once.
        # Their number is bounded anyway: past the budget, PasswordChecks lets through at most
        # PASSWORD_CHECKS_AT_ONCE checks per SLOW_CHECK_SECONDS, a few hundred lockouts a window.
        if len(self._table) <= self.capacity:
            return
        for address, entry in list(self._table.items()):
            if entry.locked_until <= now and all(now - t >= self.window for t in entry.times):
                del self._table[address]
        for address, entry in list(self._table.items()):
            if len(self._table) <= self.capacity:
                return
            if entry.locked_until <= now and address not in keep:
                del self._table[address]


class PasswordChecks:
    """What checking passwords may cost: a few checks at once, each slowed while many fail."""

    def __init__(self, at_once=PASSWORD_CHECKS_AT_ONCE, wait=PASSWORD_CHECK_WAIT,
                 delay=SLOW_CHECK_SECONDS):
        self.wait = wait
        self.delay = delay
        self._turns = threading.BoundedSemaphore(at_once)

    def check(self, credentials, username, password, slowed):
        """credentials.check() in its turn; None when no turn came within wait seconds."""
        if not self._turns.acquire(timeout=self.wait):
            return None
        try:
            if slowed:
                # Held inside the turn on purpose: at most at_once checks per delay seconds, so
                # guesses from any number of addresses go no faster than that.
                time.sleep(self.delay)
            return credentials.check(username, password)
        finally:
            self._turns.release()


def remote_address():
    return request.remote_addr or "unknown"


def lockout_message(seconds):
    minutes = max(1, math.ceil(seconds / 60))
    return (f"Too many failed logins from your address. Try again in {minutes} "
            f"minute{'s' if minutes != 1 else ''}.")


class SessionList:
    """The logins that are valid: a random id each, kept in a file until logout or its end."""

    def __init__(self, path, lifetime, clock=time.time):
        self.path = path
        self.lifetime = lifetime
        self.clock = clock  # wall-clock time: the ends outlive a restart
        self._lock = threading.Lock()
        self._ends = self._read()  # SHA-256 of a session id -> when that login ends

    def _read(self):
        """The kept logins, or none (with a warning) when the file cannot be read."""
        try:
            with open(self.path, "rb") as f:
                ends = json.loads(f.read())
            if isinstance(ends, dict) and all(isinstance(end, (int, float)) for end in ends.values()):
                return ends
            problem = "not a list of sessions"
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            problem = str(exc)
        log.warning("the session list %s cannot be read (%s): everyone logs in again", self.path, problem)
        return {}

    def start(self):
        """A new session id, valid for lifetime seconds or until it is ended."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._ends = {key: end for key, end in self._ends.items() if end > now}
            self._ends[session_key(session_id)] = now + self.lifetime
            while len(self._ends) > MAX_SESSIONS:
                del self._ends[min(self._ends, key=self._ends.get)]
            self._save()
        return session_id

    def valid(self, session_id):
        """True while the login with this id has not ended."""
        if not isinstance(session_id, str):
            return False
        with self._lock:
            end = self._ends.get(session_key(session_id))
        return end is not None and self.clock() < end

    def end(self, session_id):
        """End a login: a copy of its cookie is worth nothing from now on."""
        if not isinstance(session_id, str):
            return
        with self._lock:
            if self._ends.pop(session_key(session_id), None) is not None:
                self._save()

    def _save(self):
        """Write the logins down, so that they outlive a restart and logouts do too."""
        try:
            write_atomically(self.path, json.dumps(self._ends).encode())
        except OSError as exc:  # the logins hold until a restart: better than refusing them
            log.warning("cannot write the session list %s: %s", self.path, exc)


def session_key(session_id):
    """What the session list keeps of an id: its hash, so the file cannot log anyone in."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def logged_in():
    security = state()
    if security.credentials is None:
        return True
    return (security.credentials.session_ok(session.get("login"))
            and security.sessions.valid(session.get("session_id")))


def current_user():
    """The username when someone is logged in with a password, for the header's logout button."""
    if state().credentials and logged_in():
        return current_app.config["USERNAME"]
    return None


def api_error(message, status, headers=None):
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def authenticate():
    """None when the request may go on; otherwise the 401, 429 or redirect to answer with."""
    if logged_in() or request.endpoint in ("static", "security.login"):
        return None
    if request.path.startswith("/api/"):
        return basic_auth()
    if request.path.startswith(RPC_PREFIX):
        return basic_auth('Basic realm="Transmission"')
    if request.headers.get("HX-Request"):
        return "", 401, {"HX-Redirect": url_for("security.login")}
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("security.login", next=target), code=303)


def basic_auth(realm='Basic realm="hashdrop"'):
    """Let an API request through with the right HTTP Basic credentials, counting failures."""
    challenge = {"WWW-Authenticate": realm}
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return api_error("Log in first: send HTTP Basic auth with the hashdrop username and "
                         "password, or use the session cookie from /login.", 401, challenge)
    refusal = try_login(auth.username or "", auth.password or "")
    if refusal is None:
        return None
    return api_error(refusal.message, refusal.status, refusal.headers(challenge))


@dataclass
class Refusal:
    """Why a login was refused: the sentence to show, the status, and when to try again."""
    message: str
    status: int
    retry_after: int = 0

    def headers(self, challenge):
        """Retry-After when there is a wait; the Basic challenge for a wrong password."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after else challenge


def try_login(username, password):
    """None when username and password are right, else a Refusal; failures count against the
    address, and a locked-out address is not checked at all."""
    security, address = state(), remote_address()
    wait = security.limiter.locked_for(address)
    if not wait:
        right = security.checks.check(security.credentials, username, password,
                                      slowed=security.limiter.slowed())
        if right is None:
            return Refusal(BUSY_MESSAGE, 429, retry_after=2)
        if right:
            security.limiter.succeeded(address)
            return None
        wait = security.limiter.failed(address)
        if not wait:
            return Refusal("Wrong username or password.", 401)
    return Refusal(lockout_message(wait), 429, retry_after=math.ceil(wait))


def safe_next(target):
    """Where to go after logging in: a path on this site, never another site."""
    if target and SAFE_NEXT.fullmatch(target):
        return target
    return url_for("jobs.index")


@bp.route("/login", methods=("GET", "POST"))
def login():
    """Ask for the username and password; on success go where the person was headed."""
    credentials = state().credentials
    if credentials is None:
        return redirect(url_for("jobs.index"))
    target = safe_next(request.values.get("next"))
    username = request.form.get("username", "")
    if request.method == "POST":
        refusal = try_login(username, request.form.get("password", ""))
        if refusal is None:
            session.clear()
            session.permanent = True  # kept across browser restarts, for HASHDROP_SESSION_DAYS
            session["login"] = credentials.fingerprint
            session["session_id"] = state().sessions.start()
            return redirect(target, code=303)
    else:
        wait = state().limiter.locked_for(remote_address())
        refusal = Refusal(lockout_message(wait), 429, math.ceil(wait)) if wait else None
    if refusal is None:
        return render_template("login.html", error=None, next=target, username=username)
    page = render_template("login.html", error=refusal.message, next=target, username=username)
    # A wrong password shows the form again (200); a lockout or a busy server is a 429.
    if refusal.retry_after:
        return page, refusal.status, {"Retry-After": str(refusal.retry_after)}
    return page


@bp.post("/logout")
def logout():
    """End the login, here and in every copy of its cookie, and go back to the login page."""
    if state().sessions is not None:
        state().sessions.end(session.get("session_id"))
    session.clear()
    if state().credentials is None:
        return redirect(url_for("jobs.index"), code=303)
    flash("Logged out.", "success")
    return redirect(url_for("security.login"), code=303)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app):
        secure = app.config["SESSION_COOKIE_SECURE"]
        return bool(secure) or (has_request_context() and request.is_secure)


# Every request --------------------------------------------------------------------

def guard():
    """Before every request: the Host check, then login, then CSRF, then input limits."""
    check_host()
    response = authenticate()
    if response is not None:
        return response
    if request.path.startswith("/api/"):
        problem = cross_site_problem()  # the API has no CSRF tokens
        if problem:
            return refuse(problem, 403)
    rpc = request.path.startswith(RPC_PREFIX)
    if (request.endpoint == "jobs.start_downloads" and request.mimetype == "multipart/form-data") or rpc:
        request.max_content_length = current_app.config["MAX_UPLOAD_BYTES"]  # .torrent files
    if rpc:  # transmission-remote labels its JSON a form: transmission.py reads any body as JSON
        return None
    if form_encoding_problem():
        return refuse(NOT_UTF8, 400)
    if current_app.config["WTF_CSRF_ENABLED"] and not request.path.startswith("/api/"):
        csrf.protect()
    return input_problem()


def cross_site_problem():
    """Why a state-changing API call may come from another site's page, or None."""
    # The API takes no CSRF token. A JSON body or a custom header needs a CORS preflight, which
    # hashdrop never answers, so another site's page cannot send them; a form can send neither.
    if request.method not in STATE_CHANGING or request.is_json:
        return None
    if any(request.headers.get(name) for name in SCRIPT_HEADERS):
        return None
    if request.headers.get("Sec-Fetch-Site") == "same-origin":
        return None
    if request.headers.get("Origin") == request.host_url.rstrip("/"):
        return None
    log.info("refused a cross-site %s %r from origin %r", request.method, request.path,
             request.headers.get("Origin"))
    return ("This call may come from another site's page, so it was refused. Scripts send it "
            "with Content-Type: application/json or an X-Hashdrop: 1 header.")


def form_encoding_problem():
    """True when a posted form is not UTF-8, which werkzeug would mend or drop without a word."""
    if request.method != "POST":
        return False
    if request.mimetype == "application/x-www-form-urlencoded":
        try:
            request.get_data(cache=True).decode()  # the form parser reads the cached copy
        except UnicodeDecodeError:  # werkzeug would see an empty form
            return True
    elif request.mimetype == "multipart/form-data":
        try:
            request.form  # parsed now, by StrictMultiPartParser
        except BadRequest as exc:
            return exc.description == NOT_UTF8
    return False


class StrictMultiPartParser(MultiPartParser):
    """werkzeug's multipart parser, refusing a text field that is not UTF-8 rather than
    replacing its bad bytes with U+FFFD."""

    def get_part_charset(self, headers):
        return "latin-1"  # one character per byte, so that parse() can decode the bytes itself

    def parse(self, stream, boundary, content_length):
        """The form's fields, decoded as UTF-8 or refused with a 400, and its files."""
        fields, files = super().parse(stream, boundary, content_length)
        try:
            decoded = [(name, value.encode("latin-1").decode("utf-8"))
                       for name, value in fields.items(multi=True)]
        except UnicodeDecodeError:
            raise BadRequest(NOT_UTF8) from None
        return self.cls(decoded), files


class StrictFormDataParser(FormDataParser):
    """werkzeug's form parser, with StrictMultiPartParser for multipart bodies."""

    def parse(self, stream, mimetype, content_length, options=None):
        """(stream, form, files) as werkzeug's parse() returns them."""
        boundary = (options or {}).get("boundary", "")
        if mimetype != "multipart/form-data" or not boundary or not boundary.isascii():
            return super().parse(stream, mimetype, content_length, options)  # as werkzeug does
        parser = StrictMultiPartParser(stream_factory=self.stream_factory, cls=self.cls,
                                       max_form_memory_size=self.max_form_memory_size,
                                       max_form_parts=self.max_form_parts)
        try:
            form, files = parser.parse(stream, boundary.encode("ascii"), content_length)
        except ValueError:  # a broken body: an empty form, as werkzeug's own parser makes of it
            if not self.silent:
                raise
            return stream, self.cls(), self.cls()
        return stream, form, files


class StrictRequest(Request):
    """Flask's request, whose forms are UTF-8 or refused (StrictFormDataParser)."""
    form_data_parser_class = StrictFormDataParser


def input_problem():
    """Refuse a submit with too many lines, too long a line or control characters."""
    if request.method != "POST":
        return None
    if request.endpoint == "jobs.start_downloads":
        problem = lines_problem(request.form.get("downloads", "").splitlines(), "Line")
    elif request.endpoint == "jobs.api_submit":
        problem = api_body_problem()
    else:
        return None
    return refuse(problem, 400) if problem else None


def api_body_problem():
    if not request.is_json:
        return None  # app.py answers 415
    try:
        body = json.loads(request.get_data())
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None  # app.py's json_body says what is wrong with it
    if not isinstance(body, dict):
        return None
    if "hashes" in body:
        items = body["hashes"]
        if isinstance(items, list) and all(isinstance(item, str) for item in items):
            return lines_problem(items, "Item", len(items))
        return None  # app.py says what is wrong with it
    if isinstance(body.get("text"), str):
        return lines_problem(body["text"].splitlines(), "Line")
    return None


def lines_problem(lines, noun, count=None):
    """What is wrong with these pasted lines for the limits, in words, or None."""
    config = current_app.config
    max_lines, max_chars = config["MAX_LINES"], config["MAX_LINE_CHARS"]
    if count is None:
        count = sum(1 for line in lines if line.strip())
    if count > max_lines:
        return f"That is {count:,} {noun.lower()}s; send at most {max_lines:,} at a time."
    for number, line in enumerate(lines, 1):
        if len(line) > max_chars:
            return (f"{noun} {number} is {len(line):,} characters long; "
                    f"at most {max_chars:,} are accepted.")
        bad = FORBIDDEN_CHARACTER.search(line)
        if bad:
            return (f"{noun} {number} contains U+{ord(bad.group()):04X}, a control character or "
                    "broken Unicode; send only info hashes and magnet links.")
    return None


def refuse(message, status):
    """Answer a refused request: JSON for the API, a flash on the page for the paste form, and
    for the RPC its own envelope (its clients read a sentence in "result", not an HTML page)."""
    if request.path.startswith("/api/"):
        return api_error(message, status)
    if request.path.startswith(RPC_PREFIX) and status == 413:
        return jsonify({"result": message, "arguments": {}})
    if request.endpoint == "jobs.start_downloads":
        if request.headers.get("HX-Request"):
            # 200 so htmx shows it in #messages, as the view does for its own messages.
            return render_template("_messages.html", messages=[(message, "error")])
        flash(message, "error")
        return redirect(url_for("jobs.index"), code=303)
    error = RequestEntityTooLarge(message) if status == 413 else BadRequest(message)
    return render_template("error.html", error=error), status


def too_large(exc):
    config = current_app.config
    text = f"{size(config['MAX_REQUEST_BYTES'])} of text (HASHDROP_MAX_REQUEST_BYTES)"
    if request.endpoint == "jobs.start_downloads":
        return refuse(f"That was too much at once: hashdrop takes at most {text} and "
                      f"{size(config['MAX_UPLOAD_BYTES'])} in all with .torrent files "
                      "(HASHDROP_MAX_UPLOAD_BYTES). Send fewer lines or files at a time.", 413)
    if request.path.startswith(RPC_PREFIX):
        text = f"{size(config['MAX_UPLOAD_BYTES'])} (HASHDROP_MAX_UPLOAD_BYTES)"
    return refuse(f"The request is too large: hashdrop takes at most {text}.", 413)


def size(count):
    """1048576 -> '1 MiB', 1000 -> '1,000 bytes'."""
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):g} MiB"
    return f"{count:,} bytes"


def csrf_error(exc):
    # repr(): the path is the sender's, and a %0a in it would start a forged log line.
    log.info("CSRF check failed for %s %r: %s", request.method, request.path, exc.description)
    if request.headers.get("HX-Request"):
        flash(CSRF_MESSAGE, "error")
        return "", 400, {"HX-Refresh": "true"}  # the reloaded page has a fresh token
    return render_template("error.html", error=BadRequest(CSRF_MESSAGE)), 400


def add_security_headers(response):
    """The security headers on every answer; no-store on all but static files."""
    response.headers.update(SECURITY_HEADERS)
    if request.endpoint != "static":
        # Pages and API answers hold job names, file paths and the CSRF token: no browser cache
        # or proxy on the way should keep them.
        response.headers["Cache-Control"] = "no-store"
    return response
