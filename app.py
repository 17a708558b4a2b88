"""hashdrop: paste info hashes, get files. The app factory and its routes."""
import atexit
import hashlib
import json
import logging
import os
import secrets
import stat

from flask import (
    Blueprint, Flask, current_app, flash, get_flashed_messages, jsonify, redirect,
    render_template, request, url_for,
)
from werkzeug.exceptions import BadRequest, HTTPException

import config
from jobs import JobError, JobManager, JobState
from jobs.changes import BadToken
from jobs.durability import write_atomically
import security
import serve
import transmission
from torrent_files import MAX_TORRENT_BYTES

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__)

MIN_SECRET_CHARS = 32  # a shorter key in the secret_key file is replaced (64 hex digits are made)


def create_app(test_config=None):
    """Create the app: its settings (config.load), then the job manager, routes and security."""
    app = Flask(__name__, instance_relative_config=True)
    config.load(app, test_config)
    private_directory(app.config["DATA_DIR"])
    app.secret_key = app.config.get("SECRET_KEY") or installation_secret(app.config["DATA_DIR"])
    # Process-wide, before any download: libtorrent creates the files and folders (0666 and
    # 0777 less the umask), and a media server running as another user must be able to read them.
    os.umask(app.config["UMASK"])

    app.extensions["hashdrop"] = manager = job_manager(app.config)
    atexit.register(manager.shutdown)
    if app.config["WATCH_DIR"]:
        manager.watch(app.config["WATCH_DIR"])
    app.register_blueprint(bp)
    app.register_blueprint(transmission.bp)
    security.init_app(app)
    app.jinja_env.filters.update(filesize=filesize, duration=duration, state_word=state_word)
    app.jinja_env.globals["static_url"] = static_urls(app)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(JobError, job_error)
    return app


def static_urls(app):
    """static_url(filename) for the templates: the static file's URL with a digest of its content,
    so that browsers may keep it a year (a new version has a new URL). A page load then asks for
    no stylesheet or script again: with them revalidated, each page waited for three answers
    before its first paint."""
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 365 * 24 * 3600
    versions = {}

    def static_url(filename):
        if filename not in versions:
            with open(os.path.join(app.static_folder, filename), "rb") as f:
                versions[filename] = hashlib.sha256(f.read()).hexdigest()[:12]
        return url_for("static", filename=filename, v=versions[filename])
    return static_url


def job_manager(config):
    """The facade the views call: jobs.JobManager (one process, one libtorrent session), or in
    cluster mode cluster.web's, which keeps no session and reaches the download nodes."""
    if config["MODE"] == "cluster":
        from cluster.web import ClusterJobManager  # here: embedded mode never imports Celery

        return ClusterJobManager.from_config(config)
    return JobManager.from_config(config)


def private_directory(path):
    """Make the data dir if need be, and keep it to this user (0700): it holds the secret key,
    the logins and the job list."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if stat.S_IMODE(os.stat(path).st_mode) != 0o700:
        try:
            os.chmod(path, 0o700)
            log.info("the data dir %s is now private to this user (mode 0700)", path)
        except OSError as exc:  # another user's folder: hashdrop can still work in it
            log.warning("cannot make the data dir %s private to this user: %s", path, exc)


def installation_secret(data_dir):
    """Return this installation's random secret key, made once and kept with mode 0600."""
    path = os.path.join(data_dir, "secret_key")
    try:
        with open(path, "rb") as f:
            key = f.read().decode().strip()
    except FileNotFoundError:
        key = None
    except UnicodeDecodeError:
        key = ""
    if key is not None and len(key) >= MIN_SECRET_CHARS:
        return key
    if key is not None:  # emptied or cut short (a full disk, a bad copy): every page would fail
        log.warning("the secret key in %s is %d characters long, too short to sign logins: a new "
                    "one replaces it, and everyone logs in again", path, len(key))
    key = secrets.token_hex(32)
    write_atomically(path, key.encode())
    return key


def manager():
    return current_app.extensions["hashdrop"]


def wants_json():
    return request.path.startswith("/api/")


def http_error(exc):
    if wants_json():
        return jsonify(error=exc.description), exc.code
    return render_template("error.html", error=exc), exc.code


def job_error(exc):
    if wants_json():
        return jsonify(error=exc.message), exc.status
    flash(exc.message, "error")
    return redirect(url_for("jobs.index"), code=303)


def filesize(count):
    """1536 -> '1.5 KiB'."""
    count = float(count or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return ""


def duration(seconds):
    """95 -> '1m 35s'."""
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


STATE_WORDS = {
    "queued": "Queued", "fetching_metadata": "Fetching metadata", "downloading": "Downloading",
    "paused": "Paused", "completed": "Completed", "failed": "Failed", "cancelled": "Cancelled",
    "stalled": "Stalled",
}


def state_word(state):
    return STATE_WORDS.get(state, state)


# The page -------------------------------------------------------------------------

MAX_QUERY_CHARS = 200  # of the table's search (?q=)
MAX_NUMBER = 1_000_000  # of a page (?page=) or a file index: more than any table or torrent has
# Rows of the job table a page can show (?per=), the first the default: 1,000 rows took 380 ms
# to render, and the browser's parse, style, layout and paint of 50 rows was a third of the
# page's first paint at 10,000 jobs (docs/design.md, "The page").
ROWS_PER_PAGE = (25, 50, 100)

# The table's filters (?show=), as qBittorrent's and Transmission's side bars have them.
JOB_FILTERS = {
    "all": None,
    "active": {JobState.QUEUED, JobState.FETCHING_METADATA, JobState.DOWNLOADING},
    "stalled": {JobState.STALLED},
    "completed": {JobState.COMPLETED},
    "paused": {JobState.PAUSED},
    "failed": {JobState.FAILED},
}


def job_table(page=None, since=""):
    """What _jobs.html shows: one page of the filtered jobs, newest first, and where it is; with
    since (a poll's token), also which of them changed since (see jobs_fragment)."""
    if page is None:
        page = request.args.get("page", "1")
        # A word is the first page, as ever; a number must be one the table can take.
        page = whole_number(page, "The page number (?page=)") if page.isdigit() else 1
    show = request.args.get("show", "all")
    show = show if show in JOB_FILTERS else "all"
    per = rows_per_page()
    query = requested_query()
    start = (max(page, 1) - 1) * per
    jobs, total, token, changed = manager().newest_first(start, per, JOB_FILTERS[show], query, since)
    pages = max(1, -(-total // per))
    if not jobs and total:  # past the last page (jobs were removed): show the last one
        return job_table(pages)
    page = start // per + 1
    counts = filter_counts()
    # The query arguments that show this same table again (refresh, buttons, pages, filters).
    view = {"page": page if page > 1 else None, "show": None if show == "all" else show, "q": query or None,
            "per": per if per != ROWS_PER_PAGE[0] else None}
    return {"jobs": jobs, "total": total, "page": page, "pages": pages, "show": show, "query": query,
            "per": per, "per_choices": ROWS_PER_PAGE,
            "view": view, "filter_counts": counts, "running": manager().has_changing(),
            "status": status(), "token": token, "changed": changed,
            "rows": rows_digest([job["info_hash"] for job in jobs], pages, counts["all"])}


def rows_per_page():
    """The table's rows per page (?per=): one of ROWS_PER_PAGE, the first for anything else, as
    an unknown ?show= shows all."""
    per = request.args.get("per", "")
    return int(per) if per in map(str, ROWS_PER_PAGE) else ROWS_PER_PAGE[0]


def rows_digest(info_hashes, pages, any_jobs):
    """A short name for what the table holds besides each row's figures: its rows in order, how
    many pages there are, and whether there is any job. A poll that finds another digest
    renders the whole table again."""
    text = f"{','.join(info_hashes)};{pages};{bool(any_jobs)}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def whole_number(text, what):
    """text as a whole number up to MAX_NUMBER, in ASCII digits; a 400 that says so otherwise."""
    # str.isdigit() takes "²", which int() refuses, and int() refuses more than 4,300 digits.
    if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_NUMBER)) and int(text) <= MAX_NUMBER:
        return int(text)
    shown = text if len(text) <= 20 else f"{text[:20]}..."
    raise BadRequest(f"{what} must be a whole number from 0 to {MAX_NUMBER:,}, not {shown!r}.")


def status():
    """What the whole app is doing: transfer rates, the free space where downloads land, and
    the ports peers can reach it on."""
    return manager().status()


def filter_counts():
    """How many jobs each of the table's filters holds."""
    counts = manager().counts()
    return {name: sum(counts[state.value] for state in states) if states else sum(counts.values())
            for name, states in JOB_FILTERS.items()}


@bp.get("/")
def index():
    """The form and the job table; ?paste= fills the form (a magnet link the browser hands over)."""
    return render_template("index.html", paste=request.args.get("paste", ""), **job_table())


@bp.get("/jobs")
def jobs_fragment():
    """The job table alone, polled by the page. The poll sends the token and the rows digest of
    the table it shows (?since=, ?rows=): while the page holds the same rows, the answer is only
    the rows that changed since, with the counts and the status line, each swapped by its id
    (HX-Reswap: none keeps the rest); otherwise it is the whole table."""
    table = job_table(since=request.args.get("since", ""))
    if table["changed"] is None or request.args.get("rows") != table["rows"]:
        return render_template("_jobs.html", **table)
    changed = [job for job in table["jobs"] if job["info_hash"] in table["changed"]]
    page = render_template("_jobs_changed.html", **dict(table, jobs=changed, page_rows=len(table["jobs"]),
                                                        changes_only=True))
    return page, 200, {"HX-Reswap": "none"}


@bp.post("/start-downloads")
def start_downloads():
    """Start one background download per pasted info hash, then go back to the list."""
    uploads = [(f.filename or "upload", f.read(MAX_TORRENT_BYTES + 1))
               for f in request.files.getlist("torrents") if f.filename]
    too_big = [name for name, data in uploads if len(data) > MAX_TORRENT_BYTES]
    result = manager().submit_text(
        request.form.get("downloads", ""),
        uploads=[(name, data) for name, data in uploads if name not in too_big],
        category=request.form.get("category", ""),
        paused=request.form.get("paused") == "on",
        sequential=request.form.get("sequential") == "on",
    )
    for name in too_big:
        flash(f"Skipped {name!r}: a .torrent file may be at most {filesize(MAX_TORRENT_BYTES)}.", "error")
    for message, category in result.messages():
        flash(message, category)
    if request.headers.get("HX-Request"):
        page = render_template("_submitted.html", messages=get_flashed_messages(with_categories=True),
                               **job_table(1))
        # The page clears the paste box only when everything in it was taken.
        taken = not (result.refused or result.rejected or too_big)
        return page, 200, {"HX-Trigger": "hashdrop-taken"} if taken else {}
    return redirect(url_for("jobs.index"), code=303)


@bp.route("/jobs/<info_hash>/files", methods=["GET", "POST"])
def job_files(info_hash):
    """List a job's files and choose which to download."""
    job = manager().job(info_hash)
    if request.method == "POST":
        wanted = [whole_number(i, "A file index") for i in request.form.getlist("wanted")]
        try:
            manager().set_files(info_hash, wanted)
            flash(f"Saved the file choice for {job['name'] or job['info_hash']}.", "success")
        except JobError as exc:  # the boxes stay as they were saved: the page shows that
            flash(exc.message, "error")
        return redirect(url_for("jobs.job_files", info_hash=job["info_hash"]), code=303)
    try:
        files = manager().files(info_hash)
    except JobError as exc:
        flash(exc.message, "warning")
        files = []
    return render_template("files.html", job=job, files=files)


def acted():
    """htmx's answer to a table button: the table, and the button's message in place of the old ones."""
    return render_template("_acted.html", **job_table())


@bp.post("/jobs/retry-failed")
def retry_failed():
    """Retry every failed job: after a disk came back, there can be hundreds."""
    count = manager().retry_failed()
    flash(f"Retried {count} download{'s' if count != 1 else ''}.", "success" if count else "warning")
    if request.headers.get("HX-Request"):
        return acted()
    return back_to_table("show", "q", "per")


@bp.post("/jobs/<info_hash>/<action>")
def job_action(info_hash, action):
    """Pause, resume or remove a job from the table's buttons."""
    job = act(info_hash, action, delete_files=request.form.get("delete_files") == "true")
    flash(f"{ACTION_WORDS[action]} {job['name'] or job['info_hash']}.", "success")
    if request.headers.get("HX-Request"):
        return acted()
    return back_to_table("page", "show", "q", "per")


def back_to_table(*names):
    """A 303 to the table as the request's query arguments `names` asked for it (a form posted
    without JavaScript)."""
    return redirect(url_for("jobs.index", **{name: request.args.get(name) for name in names}), code=303)


ACTION_WORDS = {"pause": "Paused", "resume": "Resumed", "remove": "Removed"}


def act(info_hash, action, delete_files=False):
    if action == "pause":
        return manager().pause(info_hash)
    if action == "resume":
        return manager().resume(info_hash)
    if action == "remove":
        return manager().remove(info_hash, delete_files=delete_files)
    raise JobError(f"Unknown action {action!r}; use pause, resume or remove.", 404)


# The JSON API ---------------------------------------------------------------------

@bp.get("/api/jobs")
def api_jobs():
    """Every job; ?state=downloading,queued keeps those states, ?q=sintel the names or hashes holding it.

    ?since=<token> answers only what changed since the answer that gave the token (jobs.changes):
    {"token", "jobs", "removed", "full"}; an empty or stale token gets every job, with full true.
    """
    states, query = requested_states(), requested_query()
    if "since" not in request.args:
        return jsonify(manager().jobs(states=states, text=query))
    try:
        return jsonify(manager().changes(request.args["since"], states, query))
    except BadToken:
        raise JobError("?since= takes the token the last answer gave (or nothing, for every job).") from None


@bp.get("/api/status")
def api_status():
    """Transfer rates over every job, free space where downloads land, and jobs per state."""
    return jsonify({**status(), "jobs": manager().counts()})


def requested_query():
    """The words of ?q= (the table's search), trimmed and cut to MAX_QUERY_CHARS."""
    return request.args.get("q", "").strip()[:MAX_QUERY_CHARS]


def requested_states():
    """The states named in ?state= (comma separated), or None for all; a 400 for a wrong name."""
    names = [name.strip() for name in request.args.get("state", "").split(",") if name.strip()]
    known = [state.value for state in JobState]
    for name in names:
        if name not in known:
            raise JobError(f"Unknown state {name!r}; use one or more of {', '.join(known)}.")
    return {JobState(name) for name in names} or None


@bp.get("/api/jobs/<info_hash>")
def api_job(info_hash):
    return jsonify(manager().job(info_hash))


@bp.post("/api/jobs")
def api_submit():
    """Start downloads from {"hashes": [...]} or {"text": "..."}; answer line by line."""
    body = json_body()
    options = job_options(body)
    if "hashes" in body:
        items = body["hashes"]
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise JobError('"hashes" must be a list of strings.')
        result = manager().submit_items(items, **options)
    elif "text" in body:
        if not isinstance(body["text"], str):
            raise JobError('"text" must be a string.')
        result = manager().submit_text(body["text"], **options)
    else:
        raise JobError('Send {"hashes": [...]} or {"text": "..."}.')
    answer = manager().describe_submit(result)
    if result.refused:
        return jsonify(error=result.refused, **answer), result.refused_status
    if not (result.started or result.existing or result.duplicates):
        return jsonify(error=result.messages()[0][0], **answer), 400
    return jsonify(answer), 201 if result.started else 200


def job_options(body):
    """The per-job options of an API submit: category, paused, sequential."""
    category = body.get("category", "")
    if not isinstance(category, str):
        raise JobError('"category" must be a string.')
    flags = {}
    for name in ("paused", "sequential"):
        value = body.get(name, False)
        if not isinstance(value, bool):
            raise JobError(f'"{name}" must be true or false.')
        flags[name] = value
    return {"category": category, "source": "api", **flags}


@bp.get("/api/jobs/<info_hash>/files")
def api_files(info_hash):
    return jsonify(manager().files(info_hash))


@bp.post("/api/jobs/<info_hash>/files")
def api_set_files(info_hash):
    wanted = json_body().get("wanted")
    if not isinstance(wanted, list):
        raise JobError('Send {"wanted": [file indices]}.')
    return jsonify(manager().set_files(info_hash, wanted))


@bp.post("/api/jobs/<info_hash>/<action>")
def api_action(info_hash, action):
    if action not in ("pause", "resume"):
        raise JobError(f"Unknown action {action!r}; use pause or resume.", 404)
    return jsonify(act(info_hash, action))


@bp.delete("/api/jobs/<info_hash>")
def api_remove(info_hash):
    delete_files = request.args.get("delete_files", "false").lower() in ("1", "true", "yes")
    manager().remove(info_hash, delete_files=delete_files)
    return "", 204


def json_body():
    """The request's JSON object, or a 400/415 that says what is wrong with it."""
    if not request.is_json:
        raise JobError("Send the body as JSON with Content-Type: application/json.", 415)
    try:
        body = json.loads(request.get_data(as_text=False) or b"null")
    except (ValueError, RecursionError) as exc:
        raise JobError(f"The body is not valid JSON: {exc.__class__.__name__}.") from None
    if not isinstance(body, dict):
        raise JobError("The body must be a JSON object.")
    return body


if __name__ == "__main__":
    serve.serve(create_app)
