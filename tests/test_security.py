"""Login, lockout, CSRF, the Host check, input limits, headers and the refusal to start exposed."""
import base64
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from io import BytesIO
from pathlib import Path

import pytest
import waitress
from conftest import HERMETIC
from helpers import HASH_A, HASH_B
from hypothesis import HealthCheck, given, settings, strategies as st
from werkzeug.datastructures import FileStorage
from werkzeug.security import generate_password_hash
from werkzeug.test import encode_multipart

import security
import serve
from config import ConfigError, raw_setting
from security import Credentials, LoginLimiter, exposure_problem

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def secure_app(make_app):
    return make_app(PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True)


@pytest.fixture
def client(secure_app):
    """Here, unlike conftest's client, the app has a password and CSRF on."""
    return secure_app.test_client()


@pytest.fixture
def clock(secure_app):
    clock = Clock()
    secure_app.extensions["hashdrop.security"].limiter.clock = clock
    return clock


def csrf_token(client, path="/"):
    return TOKEN.search(client.get(path).get_data(as_text=True)).group(1)


def log_in(client, password=PASSWORD, username="admin", **kwargs):
    token = csrf_token(client, "/login")
    return client.post("/login", data={"csrf_token": token, "username": username,
                                       "password": password, **kwargs})


def basic(username, password):
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def page(client):
    return client.get("/").get_data(as_text=True)


# Refusing to start exposed ---------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_needs_no_password(host):
    assert exposure_problem(host, None) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", "*"])
def test_other_addresses_need_a_password(host):
    problem = exposure_problem(host, None)
    assert "HASHDROP_PASSWORD" in problem and host in problem
    assert exposure_problem(host, "") == problem
    assert exposure_problem(host, PASSWORD) is None


def test_a_trusted_proxy_needs_a_password_even_on_loopback():
    assert "HASHDROP_PASSWORD" in exposure_problem("127.0.0.1", None, trusted_proxy="127.0.0.1")
    assert exposure_problem("127.0.0.1", PASSWORD, trusted_proxy="127.0.0.1") is None


def test_serve_refuses_before_creating_the_app():
    def create_app():
        raise AssertionError("no app (and no libtorrent session) may be made")

    with pytest.raises(SystemExit) as refused:
        serve.serve(create_app, environ={"HASHDROP_HOST": "0.0.0.0"})
    assert "HASHDROP_PASSWORD" in str(refused.value.code)
    with pytest.raises(SystemExit) as refused:
        serve.serve(create_app, environ={"HASHDROP_PORT": "http"})
    assert "HASHDROP_PORT" in str(refused.value.code)


def test_serve_says_which_setting_is_wrong_without_a_traceback():
    def create_app():
        raise ConfigError("HASHDROP_DHT must be true or false, not 'maybe'")

    with pytest.raises(SystemExit) as refused:
        serve.serve(create_app, environ={})
    assert refused.value.code == "HASHDROP_DHT must be true or false, not 'maybe'"

    def create_app_with_a_bug():
        raise ValueError("a bug, not a setting")

    with pytest.raises(ValueError, match="a bug, not a setting"):  # keeps its traceback
        serve.serve(create_app_with_a_bug, environ={})


@pytest.mark.parametrize("environ, host, port", [
    ({}, "127.0.0.1", 5000),
    ({"HASHDROP_HOST": "0.0.0.0", "HASHDROP_PORT": "8080", "HASHDROP_PASSWORD": "x"}, "0.0.0.0", 8080),
])
def test_serve_hands_host_and_port_to_waitress(make_app, monkeypatch, environ, host, port):
    served = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **options: served.update(app=app, **options))
    serve.serve(make_app, environ=environ)
    assert served["host"] == host and served["port"] == port
    assert "trusted_proxy" not in served


def test_serve_trusts_only_the_named_proxy(make_app, monkeypatch):
    served = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **options: served.update(options))
    serve.serve(make_app, environ={"HASHDROP_PASSWORD": "x", "HASHDROP_TRUSTED_PROXY": "127.0.0.1"})
    assert served["trusted_proxy"] == "127.0.0.1"
    assert served["trusted_proxy_headers"] == "x-forwarded-for x-forwarded-proto"


# Runs app.py as `python app.py` would, but anything that would open a libtorrent session or a
# port exits instead: should the refusal ever be missing, nothing starts on 0.0.0.0.
SAFE_MAIN = """
import runpy, sys, waitress, jobs
def never(*args, **kwargs):
    sys.exit("STARTED: the refusal is missing")
jobs.JobManager.from_config = classmethod(never)
waitress.serve = never
runpy.run_path("app.py", run_name="__main__")
"""


def test_python_app_py_exits_with_a_message_when_exposed(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("HASHDROP_")}
    env.update({f"HASHDROP_{key}": json.dumps(value) if not isinstance(value, str) else value
                for key, value in HERMETIC.items()})
    env.update(HASHDROP_HOST="0.0.0.0", HASHDROP_PORT="0", HASHDROP_DATA_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", SAFE_MAIN], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert "STARTED" not in done.stderr
    assert done.returncode == 1
    assert "Refusing to serve on 0.0.0.0" in done.stderr and "HASHDROP_PASSWORD" in done.stderr
    assert "Traceback" not in done.stderr


# Logging in -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/jobs", f"/jobs/{HASH_A}/files", "/nowhere"])
def test_pages_redirect_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/login?next=")


def test_form_posts_need_a_login(client, secure_app):
    response = client.post("/start-downloads", data={"downloads": HASH_A})
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    assert secure_app.extensions["hashdrop"].jobs() == []


def test_htmx_requests_are_sent_to_login(client):
    response = client.get("/jobs", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login"


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/jobs"), ("POST", "/api/jobs"), ("GET", f"/api/jobs/{HASH_A}"),
    ("DELETE", f"/api/jobs/{HASH_A}"), ("POST", f"/api/jobs/{HASH_A}/pause"), ("GET", "/api/status"),
    ("GET", "/api/nothing"),
])
def test_api_answers_401_json(client, method, path):
    response = client.open(path, method=method, json={"hashes": [HASH_A]})
    assert response.status_code == 401
    assert response.get_json()["error"]
    assert response.headers["WWW-Authenticate"] == 'Basic realm="hashdrop"'


def test_login_page_and_static_files_need_no_login(client):
    assert client.get("/login").status_code == 200
    with client.get("/static/style.css") as response:  # closes the file it streams
        assert response.status_code == 200


def test_login_and_logout(client):
    response = log_in(client, password="wrong")
    assert response.status_code == 200
    assert "Wrong username or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 303

    response = log_in(client, next="/jobs")
    assert response.status_code == 303 and response.headers["Location"] == "/jobs"
    index = page(client)
    assert "Log out admin" in index and '<textarea id="downloads"' in index
    assert client.get("/api/jobs").status_code == 200  # the session cookie works for the API too

    token = TOKEN.search(index).group(1)
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get("/").status_code == 303
    assert "Logged out." in client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize("target, expected", [
    ("/jobs", "/jobs"),
    ("/?x=1", "/?x=1"),
    ("//evil.example/", "/"),
    ("https://evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("/\t/evil.example", "/"),
    ("javascript:alert(1)", "/"),
])
def test_login_goes_only_to_local_paths(client, target, expected):
    assert log_in(client, next=target).headers["Location"] == expected


def copy_of_login(app, client):
    """Another client holding a copy of client's session cookie, as a thief would."""
    thief = app.test_client()
    thief.set_cookie("hashdrop_session", client.get_cookie("hashdrop_session").value)
    return thief


def test_logout_ends_every_copy_of_the_cookie(client, secure_app):
    log_in(client)
    thief = copy_of_login(secure_app, client)
    assert thief.get("/").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert thief.get("/").status_code == 303
    assert thief.get("/api/jobs").status_code == 401


def test_logins_outlive_a_restart_and_logouts_too(make_app, client, secure_app):
    log_in(client)
    kept = copy_of_login(secure_app, client)
    other = secure_app.test_client()
    log_in(other)
    ended = copy_of_login(secure_app, other)
    other.post("/logout", data={"csrf_token": csrf_token(other)})
    secure_app.extensions["hashdrop"].shutdown()
    restarted = make_app(PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True)  # the same data dir
    for thief, status in ((kept, 200), (ended, 303)):
        copy = restarted.test_client()
        copy.set_cookie("hashdrop_session", thief.get_cookie("hashdrop_session").value)
        assert copy.get("/").status_code == status


def test_a_login_lasts_session_days_at_most(make_app):
    app = make_app(PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True, SESSION_DAYS=2)
    sessions = app.extensions["hashdrop.security"].sessions
    now = [1_000_000.0]
    sessions.clock = lambda: now[0]
    client = app.test_client()
    cookie = log_in(client).headers["Set-Cookie"]
    assert "Expires=" in cookie  # kept across browser restarts, as long as the login
    now[0] += 2 * 86400 - 60
    assert client.get("/").status_code == 200
    now[0] += 60
    assert client.get("/").status_code == 303


def test_a_new_password_ends_old_logins(make_app, client, secure_app):
    log_in(client)
    cookie = client.get_cookie("hashdrop_session").value
    secure_app.extensions["hashdrop"].shutdown()
    changed = make_app(PASSWORD="another one", WTF_CSRF_ENABLED=True).test_client()
    changed.set_cookie("hashdrop_session", cookie)
    assert changed.get("/").status_code == 303


def test_a_damaged_session_list_means_logging_in_again(make_app, tmp_path, caplog):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sessions").write_text("{not json")
    client = make_app(PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True).test_client()
    assert "cannot be read" in caplog.text
    assert log_in(client).status_code == 303 and client.get("/").status_code == 200


def test_session_cookie_flags(client, secure_app):
    cookie = log_in(client).headers["Set-Cookie"]
    assert cookie.startswith("hashdrop_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie

    https = secure_app.test_client()
    token = TOKEN.search(https.get("/login", base_url="https://localhost").get_data(as_text=True)).group(1)
    response = https.post("/login", base_url="https://localhost",
                          headers={"Referer": "https://localhost/login"},
                          data={"csrf_token": token, "username": "admin", "password": PASSWORD})
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]


@pytest.mark.parametrize("method", ["scrypt", "pbkdf2:sha256"])
def test_password_may_be_a_werkzeug_hash(make_app, method):
    hashed = generate_password_hash(PASSWORD, method=method)
    client = make_app(PASSWORD=hashed).test_client()
    assert client.get("/api/jobs", headers=basic("admin", hashed)).status_code == 401
    assert client.get("/api/jobs", headers=basic("admin", PASSWORD)).status_code == 200
    assert client.get("/api/jobs", headers=basic("admin", PASSWORD)).status_code == 200  # cached
    assert log_in(client).headers["Location"] == "/"


def test_a_broken_password_hash_is_named_at_start():
    with pytest.raises(ValueError, match="HASHDROP_PASSWORD"):
        Credentials("admin", "pbkdf2:nope:1$salt$abcdef", b"key")


def test_username_is_a_setting(make_app):
    client = make_app(PASSWORD=PASSWORD, USERNAME="alice").test_client()
    assert client.get("/api/jobs", headers=basic("admin", PASSWORD)).status_code == 401
    assert client.get("/api/jobs", headers=basic("alice", PASSWORD)).status_code == 200


def test_changing_the_password_ends_sessions():
    old = Credentials("admin", "one", b"key")
    new = Credentials("admin", "two", b"key")
    assert old.session_ok(old.fingerprint) and not new.session_ok(old.fingerprint)
    assert not new.session_ok(None) and not new.session_ok(["list"])


@pytest.mark.parametrize("typed, parsed", [("1e5", 100000.0), ("null", None), ("true", True),
                                           ('"quoted"', "quoted"), ("plain", "plain")])
def test_password_from_the_environment_is_taken_as_typed(monkeypatch, typed, parsed):
    # from_prefixed_env parses values as JSON; the password must stay the text typed.
    monkeypatch.setenv("HASHDROP_PASSWORD", typed)
    assert raw_setting({"PASSWORD": parsed}, "PASSWORD") == typed
    assert raw_setting({"PASSWORD": "from a test config"}, "PASSWORD") == "from a test config"


def test_basic_auth(client, secure_app):
    assert client.get("/api/jobs", headers=basic("admin", PASSWORD)).get_json() == []
    response = client.post("/api/jobs", json={"hashes": [HASH_A]}, headers=basic("admin", PASSWORD))
    assert response.status_code == 201
    wrong = client.get("/api/jobs", headers=basic("admin", "nope"))
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "Wrong username or password."
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="hashdrop"'
    assert client.get("/", headers=basic("admin", PASSWORD)).status_code == 303  # pages: log in


def test_without_a_password_nothing_asks_to_log_in(make_app):
    client = make_app(WTF_CSRF_ENABLED=True).test_client()
    assert client.get("/").status_code == 200 and client.get("/api/jobs").status_code == 200
    assert "Log out" not in page(client)
    assert client.get("/login").headers["Location"] == "/"


# Lockout ----------------------------------------------------------------------------

def test_five_failed_logins_lock_the_address_out(client, secure_app, clock):
    for _ in range(4):
        assert log_in(client, password="wrong").status_code == 200
    locked = log_in(client, password="wrong")
    assert locked.status_code == 429
    assert "Try again in 5 minutes." in locked.get_data(as_text=True)
    assert locked.headers["Retry-After"] == "300"

    assert log_in(client).status_code == 429  # even the right password
    assert client.get("/api/jobs", headers=basic("admin", PASSWORD)).status_code == 429
    clock.now += 250
    assert "Try again in 1 minute." in client.get("/login").get_data(as_text=True)

    elsewhere = secure_app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert log_in(elsewhere).status_code == 303

    clock.now += 51
    assert log_in(client).status_code == 303


def test_basic_auth_failures_count_and_answer_429_json(client, clock):
    for _ in range(2):
        log_in(client, password="wrong")
    for _ in range(2):
        assert client.get("/api/jobs", headers=basic("admin", "wrong")).status_code == 401
    locked = client.get("/api/jobs", headers=basic("admin", "wrong"))
    assert locked.status_code == 429
    assert "Try again in 5 minutes." in locked.get_json()["error"]
    assert locked.headers["Retry-After"] == "300"


def test_failures_outside_the_window_and_before_a_success_are_forgotten(client, clock):
    for _ in range(4):
        log_in(client, password="wrong")
    clock.now += security.LOGIN_WINDOW
    for _ in range(4):
        assert log_in(client, password="wrong").status_code == 200
    assert log_in(client).status_code == 303
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    for _ in range(4):
        assert log_in(client, password="wrong").status_code == 200


def test_failure_table_stays_bounded_and_keeps_locked_addresses():
    clock = Clock()
    limiter = LoginLimiter(capacity=10, clock=clock)
    for _ in range(5):
        limiter.failed("203.0.113.1")
    assert limiter.locked_for("203.0.113.1") == security.LOCKOUT_SECONDS
    for number in range(1000):
        clock.now += 0.01
        limiter.failed(f"198.51.100.{number}")
        assert len(limiter) <= 10
    assert limiter.locked_for("203.0.113.1") > 0


@pytest.mark.parametrize("address, keys", [
    ("203.0.113.7", ["203.0.113.7"]),
    ("::ffff:203.0.113.7", ["203.0.113.7"]),
    ("2001:db8:1:2:aaaa::1", ["2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"]),
    ("2001:DB8:1:2:0:0:0:0001", ["2001:db8:1:2::1", "2001:db8:1:2::/64"]),
    ("2001:db8:1:3::1", ["2001:db8:1:3::1", "2001:db8:1:3::/64"]),
    ("fe80::1%eth0", ["fe80::1%eth0", "fe80::/64"]),
    ("::1", ["::1", "::/64"]),
    ("unknown", ["unknown"]),
])
def test_failures_count_per_address_and_ipv6_64(address, keys):
    assert security.address_keys(address) == keys


def test_locked_addresses_are_never_forgotten_for_room():
    clock = Clock()
    limiter = LoginLimiter(capacity=3, clock=clock)
    addresses = [f"203.0.113.{number}" for number in range(6)]
    for address in addresses:
        for _ in range(security.LOGIN_FAILURES):
            limiter.failed(address)
    assert all(limiter.locked_for(address) > 0 for address in addresses)
    clock.now += security.LOCKOUT_SECONDS
    limiter.failed("198.51.100.1")  # the next count makes room: expired lockouts go
    assert len(limiter) <= 3 and limiter.locked_for(addresses[0]) == 0


def test_many_failures_server_wide_slow_every_check():
    clock = Clock()
    limiter = LoginLimiter(budget=10, clock=clock)
    for number in range(10):
        limiter.failed(f"198.51.100.{number}")
    assert not limiter.slowed()
    limiter.failed("198.51.100.99")
    assert limiter.slowed()
    clock.now += security.LOGIN_WINDOW - 1
    assert limiter.slowed()
    clock.now += 1
    assert not limiter.slowed()


def guesser(app, address):
    """A client of app that comes from address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def timed_basic_auth(app, address, password):
    started = time.monotonic()
    response = guesser(app, address).get("/api/jobs", headers=basic("admin", password))
    return response, time.monotonic() - started


def test_a_whole_ipv6_64_is_locked_out_together(secure_app):
    for number in range(1, security.LOGIN_FAILURES + 1):
        log_in(guesser(secure_app, f"2001:db8:0:1::{number:x}"), password="wrong")
    next_door = log_in(guesser(secure_app, "2001:db8:0:1:ffff::1"))
    assert next_door.status_code == 429 and "Try again in 5 minutes." in next_door.get_data(as_text=True)
    assert log_in(guesser(secure_app, "2001:db8:0:2::1")).status_code == 303  # another /64


def test_guesses_from_many_addresses_slow_every_check(secure_app):
    secure = secure_app.extensions["hashdrop.security"]
    secure.limiter = LoginLimiter(budget=10)
    secure.checks = security.PasswordChecks(delay=0.3)
    for number in range(1, 12):  # one guess each: no address comes near its own lockout
        response, seconds = timed_basic_auth(secure_app, f"127.0.0.{number}", "wrong")
        assert response.status_code == 401 and seconds < 0.3
    for number, password in ((12, "wrong"), (13, PASSWORD)):  # 11 > 10 failed: every check waits
        response, seconds = timed_basic_auth(secure_app, f"127.0.0.{number}", password)
        assert seconds >= 0.3
    assert response.status_code == 200


@pytest.mark.parametrize("wait, checked, busy", [(10, 6, 0), (0.05, 2, 4)])
def test_password_checks_run_a_few_at_a_time(secure_app, wait, checked, busy):
    secure = secure_app.extensions["hashdrop.security"]
    secure.limiter = LoginLimiter(budget=0)  # every check slowed, from the first failure on
    secure.limiter.failed("192.0.2.1")
    secure.checks = security.PasswordChecks(at_once=2, wait=wait, delay=0.5)
    answers = []
    started = time.monotonic()
    run_threads(lambda number: answers.append(timed_basic_auth(secure_app, f"127.0.1.{number}", "wrong")[0]), 6)
    seconds = time.monotonic() - started
    statuses = sorted(response.status_code for response in answers)
    assert statuses == [401] * checked + [429] * busy
    assert all(security.BUSY_MESSAGE == r.get_json()["error"] for r in answers if r.status_code == 429)
    assert seconds >= 0.5 * -(-checked // 2)  # two at a time, 0.5 s each


def run_threads(target, count):
    threads = [threading.Thread(target=target, args=(number,), name=f"login-{number}")
               for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def test_failure_table_is_thread_safe():
    limiter = LoginLimiter(capacity=500)
    errors = []

    def many_addresses(worker):
        try:
            for number in range(500):  # 100 addresses, 5 failures in a row each
                limiter.failed(f"10.{worker}.{number // 5}.1")
                limiter.locked_for(f"10.{worker}.{number // 5}.1")
        except Exception as exc:  # collected so the test fails in the main thread
            errors.append(exc)

    run_threads(many_addresses, 8)
    assert errors == []
    # Addresses counting up to a lockout may be forgotten for room; locked ones never are.
    locked = sum(limiter.locked_for(f"10.{worker}.{n}.1") > 0 for worker in range(8) for n in range(100))
    assert len(limiter) >= locked > 500

    run_threads(lambda number: limiter.failed("192.0.2.1"), security.LOGIN_FAILURES)
    assert limiter.locked_for("192.0.2.1") > 0


# CSRF -------------------------------------------------------------------------------

@pytest.fixture
def open_app(make_app):
    """No password, CSRF on: the protection does not depend on logging in."""
    return make_app(WTF_CSRF_ENABLED=True)


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_form_posts_without_a_good_token_get_400_in_plain_words(open_app, token):
    client = open_app.test_client()
    data = {"downloads": HASH_A, **({"csrf_token": token} if token is not None else {})}
    response = client.post("/start-downloads", data=data)
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "The form expired or came from another site; reload the page and try again." in body
    assert "Traceback" not in body and "CSRF" not in body
    assert open_app.extensions["hashdrop"].jobs() == []


def test_every_form_post_checks_the_token(open_app):
    client = open_app.test_client()
    token = csrf_token(client)
    assert client.post("/start-downloads", data={"csrf_token": token, "downloads": HASH_A}).status_code == 303
    assert client.post(f"/jobs/{HASH_A}/pause").status_code == 400
    assert client.post(f"/jobs/{HASH_A}/files", data={"wanted": "0"}).status_code == 400
    assert client.post(f"/jobs/{HASH_A}/pause", data={"csrf_token": token}).status_code == 303
    assert open_app.extensions["hashdrop"].get(HASH_A).state == "paused"


def test_login_and_logout_check_the_token(client):
    response = client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert response.status_code == 400
    log_in(client)
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200


def test_htmx_gets_a_reload_and_the_message(open_app):
    client = open_app.test_client()
    response = client.post("/start-downloads", data={"downloads": HASH_A}, headers={"HX-Request": "true"})
    assert response.status_code == 400 and response.headers["HX-Refresh"] == "true"
    assert "The form expired or came from another site" in page(client)


def test_the_json_api_needs_no_token_and_takes_only_json(open_app):
    client = open_app.test_client()
    assert client.post("/api/jobs", json={"hashes": [HASH_A]}).status_code == 201
    form = client.post("/api/jobs", data={"hashes": HASH_B})
    assert form.status_code == 415 and form.get_json()["error"]


def browser_client(app):
    """A client without the X-Hashdrop header conftest's clients send: a browser's form."""
    client = app.test_client()
    del client.environ_base["HTTP_X_HASHDROP"]
    return client


CROSS_SITE_REFUSAL = "This call may come from another site's page, so it was refused."
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example", "Content-Type": FORM},
    {"Origin": "null", "Content-Type": FORM},
    {"Origin": "http://localhost:8000", "Sec-Fetch-Site": "same-site", "Content-Type": FORM},
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
    {"Content-Type": "multipart/form-data; boundary=x"},
    {},  # a browser that sends no Origin, and nothing that says a script sent it
])
def test_a_cross_site_form_cannot_pause_a_job(open_app, headers):
    open_app.test_client().post("/api/jobs", json={"hashes": [HASH_A]})
    response = browser_client(open_app).post(f"/api/jobs/{HASH_A}/pause", headers=headers, data=b"x=1")
    assert response.status_code == 403
    assert response.get_json()["error"].startswith(CROSS_SITE_REFUSAL)
    assert open_app.extensions["hashdrop"].get(HASH_A).state != "paused"


@pytest.mark.parametrize("method, path, state", [
    ("POST", f"/api/jobs/{HASH_A}/resume", "paused"),
    ("POST", f"/api/jobs/{HASH_A}/files", "paused"),
    ("DELETE", f"/api/jobs/{HASH_A}?delete_files=true", "paused"),
    ("PUT", f"/api/jobs/{HASH_A}", "paused"),
])
def test_no_state_changing_api_call_is_taken_from_another_site(open_app, method, path, state):
    open_app.test_client().post("/api/jobs", json={"hashes": [HASH_A], "paused": True})
    response = browser_client(open_app).open(path, method=method, data={"wanted": "0"},
                                             headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and response.get_json()["error"].startswith(CROSS_SITE_REFUSAL)
    assert open_app.extensions["hashdrop"].get(HASH_A).state == state


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json"},
    {"X-Hashdrop": "1"},
    {"X-Requested-With": "XMLHttpRequest"},
    {"Origin": "http://localhost", "Content-Type": FORM},
    {"Sec-Fetch-Site": "same-origin", "Content-Type": FORM},
])
def test_same_origin_and_script_calls_pause_a_job(open_app, headers):
    open_app.test_client().post("/api/jobs", json={"hashes": [HASH_A]})
    response = browser_client(open_app).post(f"/api/jobs/{HASH_A}/pause", headers=headers)
    assert response.status_code == 200 and response.get_json()["state"] == "paused"


def test_reading_the_api_needs_no_header(open_app):
    assert browser_client(open_app).get("/api/jobs", headers={"Origin": "http://evil.example"}).status_code == 200


def test_csrf_can_be_turned_off_for_other_tests(make_app):
    client = make_app(WTF_CSRF_ENABLED=False).test_client()
    assert client.post("/start-downloads", data={"downloads": HASH_A}).status_code == 303


def test_every_post_form_in_the_templates_carries_the_token():
    forms = 0
    for template in sorted((ROOT / "templates").glob("*.html")):
        for form in re.findall(r"<form\b[^>]*>.*?</form>", template.read_text(), re.S):
            if re.search(r'method="post"', form, re.I):
                forms += 1
                assert 'name="csrf_token"' in form, f"{template.name}: {form[:120]}"
    assert forms >= 6


def test_rendered_forms_carry_the_token(open_app):
    client = open_app.test_client()
    client.post("/api/jobs", json={"hashes": [HASH_A]})
    html = page(client)
    forms = re.findall(r"<form\b[^>]*method=\"post\"[^>]*>.*?</form>", html, re.S)
    assert len(forms) >= 2 and all(TOKEN.search(form) for form in forms)  # the paste's, the rows'
    assert 'id="row-actions"' in forms[-1]
    buttons = re.findall(r"<button\b[^>]*formaction=[^>]*>", html)
    assert buttons and all('form="row-actions"' in button for button in buttons)  # they post through it


# The Host check ---------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "LOCALHOST", "127.0.0.1:8080", "[::1]:5000"])
def test_loopback_host_names_are_answered(make_app, host):
    client = make_app().test_client()
    assert client.get("/api/jobs", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5000", "localhost.evil.example",
                                  "127.0.0.1.nip.io", "0.0.0.0:5000", "bad host", "ünïcode.example"])
def test_other_host_names_get_403(make_app, host):
    client = make_app(PASSWORD=PASSWORD).test_client()
    api = client.get("/api/jobs", headers={"Host": host})
    assert api.status_code == 403 and "HASHDROP_ALLOWED_HOSTS" in api.get_json()["error"]
    html = client.get("/", headers={"Host": host})
    assert html.status_code == 403 and "HASHDROP_ALLOWED_HOSTS" in html.get_data(as_text=True)


@pytest.mark.parametrize("setting", ["media.lan, hashdrop.example:8080", ["media.lan", "hashdrop.example"]])
def test_allowed_hosts_setting(make_app, setting):
    client = make_app(ALLOWED_HOSTS=setting).test_client()
    assert client.get("/api/jobs", headers={"Host": "media.lan:5000"}).status_code == 200
    assert client.get("/api/jobs", headers={"Host": "hashdrop.example"}).status_code == 200
    assert client.get("/api/jobs", headers={"Host": "localhost"}).status_code == 403


def test_the_configured_host_is_allowed(make_app):
    client = make_app(HOST="192.168.1.10", PASSWORD=PASSWORD).test_client()
    assert client.get("/api/jobs", headers={"Host": "192.168.1.10:5000", **basic("admin", PASSWORD)}).status_code == 200


def test_allowed_hosts_star_turns_the_check_off(make_app):
    client = make_app(ALLOWED_HOSTS="*").test_client()
    assert client.get("/api/jobs", headers={"Host": "anything.example"}).status_code == 200


# Response headers -------------------------------------------------------------------

@pytest.mark.parametrize("path, status", [
    ("/", 200), ("/api/jobs", 200), ("/static/style.css", 200), ("/nowhere", 404),
    (f"/api/jobs/{HASH_B}", 404),
])
def test_security_headers_on_every_response(make_app, path, status):
    with make_app().test_client().get(path) as response:
        pass
    assert response.status_code == status
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_security_headers_on_refusals(client):
    for response in (client.get("/"), client.get("/api/jobs"), client.get("/", headers={"Host": "x.example"})):
        assert response.headers["Content-Security-Policy"] == CSP


def test_templates_have_no_inline_script_or_style():
    for template in (ROOT / "templates").glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=|hx-on", text, re.I), template.name
    base = (ROOT / "templates" / "base.html").read_text()
    config = json.loads(re.search(r"name=\"htmx-config\" content='([^']*)'", base).group(1))
    assert config == {**config, "allowEval": False, "includeIndicatorStyles": False}


# Bounded input ----------------------------------------------------------------------

@pytest.fixture
def api(make_app):
    return make_app().test_client()


def test_a_body_over_the_limit_gets_413_json(api):
    body = json.dumps({"text": "x" * (1024 * 1024)})
    response = api.post("/api/jobs", data=body, content_type="application/json")
    assert response.status_code == 413
    assert "HASHDROP_MAX_REQUEST_BYTES" in response.get_json()["error"]


def test_a_form_over_the_limit_is_flashed(make_app):
    client = make_app(WTF_CSRF_ENABLED=False).test_client()
    response = client.post("/start-downloads", data={"downloads": "x" * (1024 * 1024 + 1)})
    assert response.status_code == 303
    assert "That was too much at once" in page(client)


def test_torrent_uploads_may_be_larger_up_to_their_own_limit(make_app):
    client = make_app(WTF_CSRF_ENABLED=False, MAX_UPLOAD_BYTES=3 * 1024 * 1024).test_client()

    def upload(size):
        # Encoded in memory: the test client would spool a large body to a file it never closes.
        boundary, body = encode_multipart({"torrents": FileStorage(BytesIO(b"x" * size), "big.torrent")})
        return client.post("/start-downloads", data=body,
                           content_type=f"multipart/form-data; boundary={boundary}")

    assert upload(2 * 1024 * 1024).status_code == 303
    assert "too much at once" not in page(client)
    assert upload(4 * 1024 * 1024).status_code == 303
    assert "HASHDROP_MAX_UPLOAD_BYTES" in page(client)


@pytest.mark.parametrize("body, message", [
    ({"text": "\n".join(["x"] * 1001)}, "That is 1,001 lines; send at most 1,000"),
    ({"hashes": ["x"] * 1001}, "That is 1,001 items; send at most 1,000"),
    ({"text": "y" * 4097}, "Line 1 is 4,097 characters long; at most 4,096"),
    ({"hashes": [HASH_A, "y" * 4097]}, "Item 2 is 4,097 characters long"),
    ({"text": f"{HASH_A}\nnul\x00here"}, "Line 2 contains U+0000"),
    ({"hashes": ["\ud800"]}, "Item 1 contains U+D800"),
    ({"text": "magnet:?xt=urn:btih:" + HASH_A + "&dn=\udfff"}, "Line 1 contains U+DFFF"),
])
def test_api_limits_get_400_json(api, body, message):
    response = api.post("/api/jobs", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert api.get("/api/jobs").get_json() == []


def test_at_the_limits_the_app_answers_as_usual(api):
    body = {"text": "\n".join(["nope"] * 999 + ["y" * 4096]) + "\n\n\n"}
    response = api.post("/api/jobs", json=body)
    assert response.status_code == 400
    assert "at most" not in response.get_json()["error"]
    assert len(response.get_json()["rejected"]) == 1000


@pytest.mark.parametrize("text, message", [
    ("\n".join([HASH_A] * 1001), "That is 1,001 lines"),
    ("z" * 4097, "Line 1 is 4,097 characters long"),
    (f"{HASH_B}\x00", "Line 1 contains U+0000"),
])
def test_form_limits_are_flashed(make_app, text, message):
    app = make_app(WTF_CSRF_ENABLED=False)
    client = app.test_client()
    response = client.post("/start-downloads", data={"downloads": text})
    assert response.status_code == 303
    assert message in page(client)
    assert app.extensions["hashdrop"].jobs() == []
    hx = client.post("/start-downloads", data={"downloads": text}, headers={"HX-Request": "true"})
    assert hx.status_code == 200 and message in hx.get_data(as_text=True)


@pytest.mark.parametrize("body", [b"\xff\xfe{", b'{"text": "\xff"}', b"[" * 100_000, b'{"text": 1e999999}', b""])
def test_broken_json_gets_400_json(api, body):
    response = api.post("/api/jobs", data=body, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]


def test_invalid_utf8_in_the_form_is_not_a_500(make_app):
    client = make_app(WTF_CSRF_ENABLED=False).test_client()
    response = client.post("/start-downloads", data=b"downloads=%FF%FE" + HASH_A.encode(),
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 303
    assert "Started" in page(client) or "Skipped" in page(client)


def multipart(fields):
    """A multipart/form-data body of raw (name, bytes) fields, as any client can send it."""
    parts = [b'--x\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (name.encode(), value)
             for name, value in fields]
    return b"".join(parts) + b"--x--\r\n"


@pytest.mark.parametrize("fields", [
    [("downloads", b"\xff\xfe" + HASH_A.encode())],
    [("downloads", HASH_A.encode()), ("category", b"Movies\xc3")],
    [("downloads", HASH_A.encode()), ("category", b"\xed\xa0\x80")],  # an encoded surrogate
])
def test_invalid_utf8_in_a_multipart_form_is_refused(make_app, fields):
    app = make_app(WTF_CSRF_ENABLED=False)
    client = app.test_client()
    response = client.post("/start-downloads", data=multipart(fields),
                           content_type="multipart/form-data; boundary=x")
    assert response.status_code == 303
    assert "The form data is not valid UTF-8" in page(client)
    assert app.extensions["hashdrop"].jobs() == []


def test_a_valid_multipart_form_still_works(make_app):
    app = make_app(WTF_CSRF_ENABLED=False)
    client = app.test_client()
    body = multipart([("downloads", HASH_A.encode()), ("category", "Fïlms".encode())])
    response = client.post("/start-downloads", data=body, content_type="multipart/form-data; boundary=x")
    assert response.status_code == 303
    assert app.extensions["hashdrop"].job(HASH_A)["category"] == "Fïlms"


@pytest.mark.parametrize("category", ["TV\nShows", "TV\r\nShows", "Films\n", "tab\there", "\x1b[31mred",
                                      "x\x85y", "\ud800", "Films/\udfff"])
def test_categories_with_control_characters_or_broken_unicode_get_400(api, category):
    response = api.post("/api/jobs", json={"hashes": [HASH_A], "category": category})
    assert response.status_code == 400
    assert "a control character or broken Unicode" in response.get_json()["error"]
    assert api.get("/api/jobs").get_json() == []


@pytest.mark.parametrize("path", ["/?page=\u00b2", "/jobs?page=\u0663", "/?page=" + "9" * 5000,
                                  "/jobs?page=1000001"])
def test_crafted_page_numbers_get_400_with_a_reason(api, path):
    response = api.get(path)
    assert response.status_code == 400
    assert "The page number (?page=) must be a whole number from 0 to 1,000,000" in response.get_data(as_text=True)


@pytest.fixture
def three_files(make_app, tmp_path):
    """An app with a paused job whose .torrent (three files) was uploaded: its file list is known."""
    from swarm import make_payload, make_torrent, wait_until

    payload = make_payload(tmp_path / "seed", "season", {"e1.mkv": 20000, "e2.mkv": 20000, "e3.mkv": 20000})
    torrent = make_torrent(payload, "http://127.0.0.1:1/announce")
    app = make_app()
    client = app.test_client()
    client.post("/start-downloads", content_type="multipart/form-data",
                data={"torrents": [(BytesIO(torrent.data), "season.torrent")], "paused": "on"})
    url = f"/api/jobs/{torrent.info_hash}"
    wait_until(lambda: client.get(f"{url}/files").status_code == 200, 20, "no file list")
    return client, url


def wanted_files(client, url):
    return [entry["wanted"] for entry in client.get(f"{url}/files").get_json()]


@pytest.mark.parametrize("wanted", [[999999], [0, 3], [-1], [2, 10**30]])
def test_file_indices_out_of_range_get_400_and_change_nothing(three_files, wanted):
    client, url = three_files
    response = client.post(f"{url}/files", json={"wanted": wanted})
    assert response.status_code == 400
    assert "this torrent's files are numbered 0 to 2" in response.get_json()["error"]
    assert wanted_files(client, url) == [True, True, True]


@pytest.mark.parametrize("value", ["\u00b2", "9" * 5000, "-1", "1.0", "x"])
def test_crafted_file_indices_in_the_form_get_400(three_files, value):
    client, url = three_files
    response = client.post(url.replace("/api", "") + "/files", data={"wanted": ["0", value]})
    assert response.status_code == 400
    assert "A file index must be a whole number" in response.get_data(as_text=True)
    assert wanted_files(client, url) == [True, True, True]


def test_a_forged_line_in_the_log_is_shown_as_one(open_app, caplog):
    caplog.set_level("INFO", logger="security")
    client = open_app.test_client()
    client.post("/jobs/x%0aINFO security: admin logged in/pause")
    record = next(r for r in caplog.records if "CSRF" in r.getMessage())
    assert "\n" not in record.getMessage() and "\\n" in record.getMessage()


# What waitress holds before the app sees a request ---------------------------------

MiB = 1024 * 1024
REAL_LIMIT = MiB  # the real server's HASHDROP_MAX_UPLOAD_BYTES
REAL_IDLE_TIMEOUT = 2  # and HASHDROP_IDLE_TIMEOUT


def accepts_connections(port, process):
    assert process.poll() is None, "the server exited"
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """`python app.py` on a free loopback port, with a password, a 1 MiB upload limit and a 2 s
    idle timeout; yields its port."""
    from swarm import free_port, loopback_app_env, wait_until

    folder = tmp_path_factory.mktemp("real-server")
    port = free_port()
    env = loopback_app_env(port, folder / "downloads", folder / "data", "http://127.0.0.1:1/announce",
                           PASSWORD=PASSWORD, MAX_UPLOAD_BYTES=REAL_LIMIT, IDLE_TIMEOUT=REAL_IDLE_TIMEOUT)
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: accepts_connections(port, process), 30, "the server did not start")
        yield port
    finally:
        process.terminate()
        process.wait(20)


def post_head(port, headers):
    """A connection to the real server that has sent a POST's request line and headers."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = ["POST /start-downloads HTTP/1.1", "Host: 127.0.0.1",
             "Content-Type: multipart/form-data; boundary=x", *headers, "", ""]
    connection.sendall("\r\n".join(lines).encode())
    return connection


def answer_or_close(connection):
    """The first bytes the server answers with; b"" when it closed (or reset) the connection."""
    try:
        return connection.recv(4096)
    except ConnectionResetError:
        return b""


def send_until_refused(connection, total):
    """Send total bytes of chunked body, never its last chunk; stop when the server hangs up."""
    chunk = b"x" * (64 * 1024)
    try:
        for _ in range(total // len(chunk)):
            connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except (BrokenPipeError, ConnectionResetError):
        pass


def test_a_body_over_the_limit_is_refused_before_it_is_read(real_server):
    with post_head(real_server, [f"Content-Length: {100 * REAL_LIMIT}"]) as connection:
        answer = answer_or_close(connection)  # not one byte of the body was sent
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_chunked_body_is_cut_off_at_the_limit(real_server):
    with post_head(real_server, ["Transfer-Encoding: chunked"]) as connection:
        send_until_refused(connection, 3 * REAL_LIMIT)
        answer = answer_or_close(connection)  # before the body's end: waitress stopped reading
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413 ")


def test_a_body_at_the_limit_reaches_the_app(real_server):
    body = b"x" * (REAL_LIMIT - 1024)
    with post_head(real_server, [f"Content-Length: {len(body)}"]) as connection:
        connection.sendall(body)
        answer = answer_or_close(connection)
    assert answer.startswith(b"HTTP/1.1 303 ") and b"Location: /login" in answer  # the app's login


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"],
                         ids=["nothing", "half a request"])
def test_a_silent_connection_is_closed_within_the_idle_timeout(real_server, sent):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", real_server), timeout=10) as connection:
        connection.sendall(sent)
        assert answer_or_close(connection) == b""
    assert time.monotonic() - started < REAL_IDLE_TIMEOUT * 1.25 + 1.5


def test_serve_hands_waitress_its_limits(make_app, monkeypatch):
    served = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **options: served.update(options))
    serve.serve(lambda: make_app(MAX_UPLOAD_BYTES=5 * MiB, IDLE_TIMEOUT=40), environ={})
    assert served["max_request_body_size"] == 5 * MiB + serve.MULTIPART_OVERHEAD
    assert served["channel_timeout"] == 40 and served["cleanup_interval"] == 10
    assert served["max_request_header_size"] < 256 * 1024 and served["connection_limit"] <= 100


# The secret key ---------------------------------------------------------------------

def test_secret_key_is_random_per_installation_and_private(make_app, tmp_path):
    first = make_app(SECRET_KEY=None, DATA_DIR=str(tmp_path / "one"))
    second = make_app(SECRET_KEY=None, DATA_DIR=str(tmp_path / "two"))
    assert first.secret_key != second.secret_key and len(first.secret_key) >= 32
    for name, app in (("one", first), ("two", second)):
        key_file = tmp_path / name / "secret_key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert key_file.read_text().strip() == app.secret_key
    first.extensions["hashdrop"].shutdown()
    assert make_app(SECRET_KEY=None, DATA_DIR=str(tmp_path / "one")).secret_key == first.secret_key


def test_a_configured_secret_key_writes_no_file(make_app, tmp_path):
    app = make_app(SECRET_KEY="from-the-environment", DATA_DIR=str(tmp_path / "set"))
    assert app.secret_key == "from-the-environment"
    assert not (tmp_path / "set" / "secret_key").exists()


@pytest.mark.parametrize("typed", ["12345678901234567890123456789012345678", "1e5", "true", "null"])
def test_a_secret_key_from_the_environment_is_kept_as_typed(monkeypatch, tmp_path, typed):
    # from_prefixed_env parses values as JSON: 1e5 became 100000.0, null no key at all.
    from app import create_app

    monkeypatch.setenv("HASHDROP_SECRET_KEY", typed)
    monkeypatch.setenv("HASHDROP_SAVE_PATH", str(tmp_path / "downloads"))
    monkeypatch.setenv("HASHDROP_DATA_DIR", str(tmp_path / "data"))
    app = create_app()
    try:
        assert app.secret_key == typed
        assert app.test_client().get("/").status_code == 200  # the page signs its CSRF token
        assert not (tmp_path / "data" / "secret_key").exists()
    finally:
        app.extensions["hashdrop"].shutdown()


@pytest.mark.parametrize("content", [b"", b"\n", b"too short", b"\xff\xfe" * 40],
                         ids=["empty", "a line break", "too short", "not text"])
def test_an_unusable_secret_key_file_is_replaced(make_app, tmp_path, caplog, content):
    (tmp_path / "data").mkdir()
    key_file = tmp_path / "data" / "secret_key"
    key_file.write_bytes(content)
    app = make_app(SECRET_KEY=None, PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True)
    assert len(app.secret_key) >= 32 and key_file.read_text() == app.secret_key
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert "too short to sign logins" in caplog.text
    client = app.test_client()
    assert log_in(client).status_code == 303 and client.get("/").status_code == 200


# Files only this user may read ------------------------------------------------------

@pytest.fixture
def usual_umask():
    """The umask most systems give a service (022): files come out 0644 unless hashdrop says."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("existing", [False, True], ids=["new install", "older install"])
def test_the_data_dir_and_what_it_holds_are_private(make_app, tmp_path, usual_umask, existing):
    data = tmp_path / "data"
    if existing:  # as an older hashdrop left them
        data.mkdir(mode=0o755)
        for name in ("hashdrop.sqlite3", "hashdrop.sqlite3-wal"):
            (data / name).touch(mode=0o644)
    app = make_app(SECRET_KEY=None, PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    log_in(client)
    assert client.post("/api/jobs", json={"hashes": [HASH_A]}).status_code == 201
    assert mode(data) == 0o700
    for name in ("secret_key", "sessions", "running", "hashdrop.sqlite3", "hashdrop.sqlite3-wal",
                 "hashdrop.sqlite3-shm"):
        assert mode(data / name) == 0o600, name


def test_resume_files_are_written_private(tmp_path, usual_umask):
    from jobs.durability import write_atomically

    write_atomically(str(tmp_path / "job.resume"), b"resume data")
    assert mode(tmp_path / "job.resume") == 0o600 and os.listdir(tmp_path) == ["job.resume"]


# Caching ----------------------------------------------------------------------------

@pytest.mark.parametrize("path, cached", [
    ("/", False), ("/jobs", False), ("/login", False), ("/api/jobs", False), ("/api/status", False),
    (f"/api/jobs/{HASH_B}", False), ("/nowhere", False), ("/static/style.css", True),
])
def test_pages_and_the_api_are_never_cached(make_app, path, cached):
    with make_app().test_client().get(path) as response:
        pass
    assert (response.headers.get("Cache-Control") == "no-store") != cached


# Fuzzing ----------------------------------------------------------------------------

@pytest.fixture
def fuzz_app(make_app):
    """One app for all of a fuzz test's examples (Hypothesis shares function-scoped fixtures)."""
    return make_app(WTF_CSRF_ENABLED=True)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
hex_hashes = st.from_regex(r"\A[0-9a-fA-F]{40}\Z")
lines = st.one_of(
    st.text(max_size=120),
    hex_hashes,
    st.builds(lambda h, tail: f"magnet:?xt=urn:btih:{h}&dn={tail}", hex_hashes, st.text(max_size=40)),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=4000, max_size=4200),
)
# Lone surrogates can only come in through JSON ("\ud800"), not through a form.
api_lines = lines | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(),
                            max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def assert_api_answer(response):
    assert response.status_code < 500
    if response.status_code >= 400:
        assert response.is_json and response.get_json()["error"]


@FUZZ
@given(text=st.lists(lines, max_size=8).map("\n".join) | st.binary(max_size=300))
def test_fuzz_the_paste_form(fuzz_app, text):
    client = fuzz_app.test_client()
    token = csrf_token(client)
    if isinstance(text, bytes):  # raw, as no browser would send it
        response = client.post("/start-downloads", content_type="application/x-www-form-urlencoded",
                               data=b"csrf_token=" + token.encode() + b"&downloads=" + text)
    else:
        response = client.post("/start-downloads", data={"csrf_token": token, "downloads": text})
    assert response.status_code == 303, response.get_data(as_text=True)
    assert client.get("/api/jobs").status_code == 200


@FUZZ
@given(body=st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"text": st.lists(api_lines, max_size=8).map("\n".join)},
                          optional={"category": st.text(max_size=20), "paused": st.booleans()})
      .map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"hashes": st.lists(api_lines, max_size=8)})
      .map(lambda value: json.dumps(value).encode()),
))
def test_fuzz_the_api(fuzz_app, body):
    client = fuzz_app.test_client()
    assert_api_answer(client.post("/api/jobs", data=body, content_type="application/json"))
    assert client.get("/api/jobs").status_code == 200



# In a browser -----------------------------------------------------------------------

@pytest.fixture
def live_url(secure_app):
    """The secured app served on loopback by a thread, stopped after the test."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, secure_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.mark.browser
def test_login_htmx_and_logout_work_under_the_csp(live_url, browser):
    from playwright.sync_api import expect

    console = []
    page = browser.new_page()
    try:
        page.on("console", lambda message: console.append(message.text))
        page.goto(live_url + "/")
        expect(page.locator("h1")).to_have_text("Log in")
        page.fill("#username", "admin")
        page.fill("#password", PASSWORD)
        page.click("form.login button")
        page.fill("#downloads", HASH_A)
        page.click("form.submit button")  # sent by htmx, with the form's csrf_token
        expect(page.locator("#messages")).to_contain_text("Started 1 download:")
        page.click(f"#job-{HASH_A} .actions button:first-child")
        expect(page.locator(f"#job-{HASH_A} .state")).to_contain_text("Paused")
        page.click("header form.logout button")
        expect(page.locator("#messages")).to_contain_text("Logged out.")
    finally:
        page.close()
    assert not [text for text in console if "Content Security Policy" in text]
