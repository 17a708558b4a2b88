"""The page and its form (app.py's views): submitting pastes, flashed messages and the session
cookie, buttons without JavaScript, the job table's pages, filters and search, and the status bar."""
import re
import secrets
import time

from helpers import FINISHED, HASH_A, HASH_B, flashes
from jobs import JobState


BASE32 = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"  # 32 base32 characters: a v1 hash


def test_index_shows_the_form(client):
    page = client.get("/").get_data(as_text=True)
    assert '<textarea id="downloads" name="downloads"' in page
    assert "No downloads yet" in page


def test_submit_starts_jobs_and_redirects(client, manager):
    response = client.post("/start-downloads", data={"downloads": f"  {HASH_A.upper()}  \n\n{HASH_B}\n"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/")
    jobs = {job["info_hash"]: job for job in manager.jobs()}
    assert set(jobs) == {HASH_A, HASH_B}
    page = flashes(client)
    assert "Started 2 downloads:" in page
    assert HASH_A in page


def test_submit_base32_and_magnet(client, manager):
    magnet = f"magnet:?xt=urn:btih:{HASH_B}&dn=Some+Name"
    client.post("/start-downloads", data={"downloads": f"{BASE32}\n{magnet}"})
    jobs = {job["info_hash"]: job for job in manager.jobs()}
    assert "6162636465666768696a6b6c6d6e6f7071727374" in jobs  # base32 decoded to hex
    assert jobs[HASH_B]["name"] == "Some Name"


def test_submit_empty_asks_for_a_hash(client, manager):
    response = client.post("/start-downloads", data={"downloads": "  \n \n"})
    assert response.status_code == 303
    assert "Paste at least one info hash or magnet link." in flashes(client)
    assert manager.jobs() == []


def test_bad_lines_are_named_and_good_lines_still_start(client, manager):
    client.post("/start-downloads", data={"downloads": f"not a hash\n{HASH_A}\n{HASH_A[:39]}"})
    page = flashes(client)
    assert "not a hash" in page and "39" in page
    assert "Started 1 download:" in page
    assert [job["info_hash"] for job in manager.jobs()] == [HASH_A]


def test_duplicates_and_existing_jobs_start_nothing_new(client, manager):
    client.post("/start-downloads", data={"downloads": f"{HASH_A}\n{HASH_A.upper()}"})
    assert "pasted more than once" in flashes(client)
    client.post("/start-downloads", data={"downloads": HASH_A})
    page = flashes(client)
    assert "already in the list" in page and "Started 0 downloads." in page
    assert len(manager.jobs()) == 1


def test_submit_answers_fast_with_many_hashes(client):
    lines = "\n".join(f"{i:040x}" for i in range(1, 201))
    started = time.perf_counter()
    response = client.post("/start-downloads", data={"downloads": lines})
    assert response.status_code == 303
    assert time.perf_counter() - started < 5  # generous: it must not wait for any peer


def test_page_actions_without_javascript(client):
    client.post("/start-downloads", data={"downloads": HASH_A})
    response = client.post(f"/jobs/{HASH_A}/pause")
    assert response.status_code == 303
    page = flashes(client)
    assert "Paused" in page and "state-paused" in page
    client.post(f"/jobs/{HASH_A}/remove")
    assert "No downloads yet" in flashes(client)


def test_a_paste_of_many_bad_lines_keeps_the_session_cookie_small(client, manager):
    """Each skipped line was its own flashed message; 300 of them made a cookie browsers drop."""
    lines = [f"line {number} of a paste: {secrets.token_urlsafe(30)}" for number in range(300)]
    response = client.post("/start-downloads", data={"downloads": "\n".join(lines + [HASH_A])})
    cookie = response.headers["Set-Cookie"]
    assert len(cookie) < 4093
    page = flashes(client)
    assert "line 0 of" in page and "line 4 of" in page and "line 5 of" not in page
    assert "295 more lines were skipped" in page
    assert "Started 1 download:" in page


def rows_of(html):
    """The info hashes of the job table's rows, top to bottom."""
    return re.findall(r'<tr id="job-([0-9a-f]+)"', html)


def page_rows(client, url):
    page = client.get(url).get_data(as_text=True)
    return rows_of(page), page


def test_the_table_shows_twenty_five_jobs_a_page_newest_first(client, manager):
    hashes = [f"{number:040x}" for number in range(1, 61)]
    for chunk in (hashes[:30], hashes[30:]):  # two submits: the second one's jobs are newer
        client.post("/start-downloads", data={"downloads": "\n".join(chunk)})
    rows, page = page_rows(client, "/")
    assert rows == hashes[::-1][:25]
    assert "60 downloads, newest first · page 1 of 3" in page and "?page=2" in page
    assert page_rows(client, "/?page=2")[0] == hashes[::-1][25:50]
    assert page_rows(client, "/?page=3")[0] == hashes[::-1][50:]
    assert page_rows(client, "/?page=99")[0] == hashes[::-1][50:]  # past the end: the last page
    assert page_rows(client, "/?page=nonsense")[0] == hashes[::-1][:25]
    assert page_rows(client, "/jobs?page=2")[0] == hashes[::-1][25:50]


def test_the_table_shows_more_rows_a_page_when_asked_and_keeps_the_choice(client, manager):
    hashes = [f"{number:040x}" for number in range(1, 121)]
    client.post("/start-downloads", data={"downloads": "\n".join(hashes)})
    newest = hashes[::-1]
    rows, page = page_rows(client, "/?page=3")  # rows 51-75
    # The choice of sizes, each keeping this page's first row in view.
    assert re.search(r'<span class="per">Rows per page\s*<a href="/\?page=3"', page)
    assert '<a href="/?page=2&amp;per=50">50</a>' in page and '<a href="/?per=100">100</a>' in page
    rows, page = page_rows(client, "/?page=2&per=50")
    assert rows == newest[50:100] and "page 2 of 3" in page
    # Every way on from here keeps 50 a page: pages, filters, buttons, search, the poll.
    assert 'href="/?page=3&amp;per=50" rel="next"' in page
    assert 'href="/?show=paused&amp;per=50"' in page
    assert f"/jobs/{rows[0]}/pause?page=2&amp;per=50" in page
    assert '<input type="hidden" name="per" value="50">' in page
    assert "/jobs?page=2&amp;per=50&amp;since=" in page
    response = client.post(f"/jobs/{rows[0]}/pause?page=2&per=50")
    assert response.headers["Location"].endswith("/?page=2&per=50")
    assert page_rows(client, "/?per=100")[0] == newest[:100]
    assert page_rows(client, "/?per=7")[0] == newest[:25]  # not a size it offers: the first


def test_a_button_on_page_two_comes_back_to_page_two(client, manager):
    hashes = [f"{number:040x}" for number in range(1, 61)]
    client.post("/start-downloads", data={"downloads": "\n".join(hashes)})
    rows, page = page_rows(client, "/?page=2")
    assert f'/jobs/{rows[0]}/pause?page=2' in page
    response = client.post(f"/jobs/{rows[0]}/pause?page=2")
    assert response.status_code == 303 and response.headers["Location"].endswith("/?page=2")
    fragment = client.post(f"/jobs/{rows[0]}/pause?page=2", headers={"HX-Request": "true"})
    assert rows_of(fragment.get_data(as_text=True)) == rows
    # The button's message comes with the table (it used to wait for the next full page load).
    assert re.search(r'<div id="messages"[^>]*hx-swap-oob="true">\s*<p class="flash flash-success">Paused ',
                     fragment.get_data(as_text=True))
    assert "flash-success" not in client.get("/").get_data(as_text=True)  # shown once, not again later


def test_the_table_filters_by_state_and_its_buttons_keep_the_filter(client, manager):
    """A library of hundreds: the failed or paused few should not be pages away."""
    from swarm import wait_until

    hashes = [f"{number:040x}" for number in range(1, 8)]
    client.post("/start-downloads", data={"downloads": "\n".join(hashes)})
    # Adding a torrent sets its job's state: set states by hand only after that.
    wait_until(lambda: all(manager.get(h).run.torrent for h in hashes), 10, "the jobs were not added")
    manager.pause(hashes[1])
    manager.pause(hashes[4])
    manager.lifecycle.set_state(manager.get(hashes[2]), JobState.FAILED, error="No space left on device")
    rows, page = page_rows(client, "/?show=paused")
    assert rows == [hashes[4], hashes[1]] and "2 paused downloads" in page
    assert 'aria-current="page">Paused <small>2</small>' in page and ">Failed <small>1</small>" in page
    assert 'hx-get="/jobs?show=paused&amp;since=' in page  # the once-a-second refresh keeps the filter
    assert ">All <small>7</small>" in page and ">Active <small>4</small>" in page
    assert page_rows(client, "/?show=failed")[0] == [hashes[2]]
    assert "Retry all 1</button>" in client.get("/?show=failed").get_data(as_text=True)
    assert "Retry all" not in page
    assert page_rows(client, "/jobs?show=active")[0] == [hashes[6], hashes[5], hashes[3], hashes[0]]
    assert page_rows(client, "/?show=nonsense")[0] == hashes[::-1]  # all
    assert "No completed downloads." in client.get("/?show=completed").get_data(as_text=True)
    # A button in a filtered table comes back to it, with and without htmx.
    assert f"/jobs/{hashes[4]}/resume?show=paused" in page
    response = client.post(f"/jobs/{hashes[4]}/resume?page=1&show=paused")
    assert response.status_code == 303 and response.headers["Location"].endswith("/?page=1&show=paused")
    fragment = client.post(f"/jobs/{hashes[1]}/resume?page=1&show=paused", headers={"HX-Request": "true"})
    assert "No paused downloads." in fragment.get_data(as_text=True)


def test_the_table_finds_jobs_by_name_or_hash_and_keeps_the_search(client, manager):
    """In a library of hundreds, one film is found by a word of its name."""
    names = ["Sintel (2010)", "Big Buck Bunny (2008)", "Sintel – Director's Cut", "Tears of Steel"]
    hashes = [f"{number:040x}" for number in range(1, 5)]
    client.post("/start-downloads", data={"downloads": "\n".join(
        f"magnet:?xt=urn:btih:{info_hash}&dn={name.replace(' ', '+')}" for info_hash, name in zip(hashes, names))})
    rows, page = page_rows(client, "/?q=sintel")
    assert rows == [hashes[2], hashes[0]] and "2 downloads matching “sintel”" in page
    assert 'name="q" value="sintel"' in page and ">All <small>4</small>" in page  # counts are of every job
    assert 'hx-get="/jobs?q=sintel&amp;since=' in page  # the refresh keeps the search, and so do the buttons:
    assert f"/jobs/{hashes[0]}/pause?q=sintel" in page
    response = client.post(f"/jobs/{hashes[0]}/pause?q=sintel")
    assert response.headers["Location"].endswith("/?q=sintel")
    rows, page = page_rows(client, "/?q=sintel&show=paused")
    assert rows == [hashes[0]] and 'name="show" value="paused"' in page
    assert page_rows(client, f"/?q={hashes[3][-6:]}")[0] == [hashes[3]]  # by hash
    assert [job["info_hash"] for job in client.get("/api/jobs?q=SINTEL").get_json()] == [hashes[0], hashes[2]]
    assert [job["info_hash"] for job in client.get("/api/jobs?q=sintel&state=paused").get_json()] == [hashes[0]]
    assert "No downloads matching “nothing like it”." in client.get("/?q=nothing+like+it").get_data(as_text=True)
    page = client.get("/?q=<b>x</b>").get_data(as_text=True)
    assert "<b>x</b>" not in page and "“&lt;b&gt;x&lt;/b&gt;”" in page


def test_the_page_and_the_api_show_the_transfer_rates_and_the_free_space(client, manager, app):
    """qBittorrent's status bar: what moves now, and how much room the library has left."""
    import shutil

    from swarm import wait_until

    hashes = [HASH_A, HASH_B]
    client.post("/api/jobs", json={"hashes": hashes})
    jobs = [manager.get(h) for h in hashes]
    wait_until(lambda: all(job.run.torrent for job in jobs), 10, "the jobs were not added")
    for job in jobs:  # libtorrent's own statuses (no peers here) would overwrite the ones set below
        manager.session.forget(job.keys(), job.run.inbox.put)
    manager.lifecycle.set_state(jobs[0], JobState.DOWNLOADING)
    jobs[0].live = {**FINISHED, "finished": False, "download_rate": 3 * 1024 * 1024, "upload_rate": 1024, "peers": 2}
    jobs[1].live = {**FINISHED, "finished": False, "download_rate": 9999, "upload_rate": 9999, "peers": 0}
    for job in jobs:  # as after each status libtorrent sends (Lifecycle.handle)
        manager.registry.touch(job)
    status = client.get("/api/status").get_json()
    free = shutil.disk_usage(app.config["SAVE_PATH"]).free
    assert status["download_rate"] == 3 * 1024 * 1024 and status["upload_rate"] == 1024
    assert abs(status["free_bytes"] - free) < 64 * 1024 * 1024 and status["save_path"] == app.config["SAVE_PATH"]
    assert status["jobs"]["downloading"] == 1 and sum(status["jobs"].values()) == 2
    page = client.get("/").get_data(as_text=True)
    assert "↓ 3.0 MiB/s · ↑ 1.0 KiB/s" in page and " free</span>" in page


def poll_of(html):
    """The URL the table's once-a-second poll asks, or None when it does not poll."""
    import html as markup

    found = re.search(r'<div id="jobs-poll"[^>]*hx-get="([^"]+)"', html)
    return markup.unescape(found.group(1)) if found else None


def quiet_poll(client, url):
    """Poll from url until an answer holds no row (the jobs' first statuses are in); return the
    poll that answer asks for next."""
    from swarm import wait_until

    def settled():
        nonlocal url
        answer = client.get(url, headers={"HX-Request": "true"}).get_data(as_text=True)
        asked, url = url, poll_of(answer)
        return asked if not rows_of(answer) and "<section" not in answer else None

    return wait_until(settled, 20, "the table kept changing")


def test_the_poll_answers_only_the_rows_that_changed(client, manager):
    """At 10,000 jobs every poll rendered its 50 rows again, and the API sent them all."""
    hashes = [HASH_A, HASH_B, "c" * 40]
    client.post("/start-downloads", data={"downloads": "\n".join(hashes)})
    poll = quiet_poll(client, poll_of(client.get("/").get_data(as_text=True)))
    manager.pause(HASH_B)
    response = client.get(poll, headers={"HX-Request": "true"})
    answer = response.get_data(as_text=True)
    assert response.headers["HX-Reswap"] == "none"  # nothing but what is swapped by id
    assert rows_of(answer) == [HASH_B] and "<section" not in answer
    assert re.search(rf'<template>\s*<tr id="job-{HASH_B}" hx-swap-oob="true" class="state-paused"', answer)
    assert 'id="filters" aria-label="Show downloads" hx-swap-oob="true"' in answer
    assert ">Paused <small>1</small>" in answer  # the counts come along
    assert poll_of(answer) != poll  # the next poll asks from now on
    nothing = client.get(poll_of(answer), headers={"HX-Request": "true"}).get_data(as_text=True)
    assert rows_of(nothing) == [] and poll_of(nothing)


def test_the_poll_answers_the_whole_table_when_its_rows_change(client, manager):
    hashes = [HASH_A, HASH_B, "c" * 40]
    client.post("/start-downloads", data={"downloads": "\n".join(hashes)})
    poll = quiet_poll(client, poll_of(client.get("/").get_data(as_text=True)))
    manager.remove(HASH_B)
    response = client.get(poll, headers={"HX-Request": "true"})
    answer = response.get_data(as_text=True)
    assert "HX-Reswap" not in response.headers and answer.startswith('<section id="jobs"')
    assert rows_of(answer) == ["c" * 40, HASH_A]  # the removed row is gone, the rest rendered again
    stale = re.sub(r"since=[^&]+", "since=0abc.1", poll)  # another run's token: the whole table
    assert rows_of(client.get(stale).get_data(as_text=True)) == ["c" * 40, HASH_A]
    assert rows_of(client.get(re.sub(r"since=[^&]+", "since=nonsense", poll)).get_data(as_text=True))


def test_stylesheet_and_scripts_are_kept_by_the_browser_until_they_change(client):
    """Revalidated, they were three more answers each page load waited for before its first paint."""
    import hashlib

    page = client.get("/").get_data(as_text=True)
    urls = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert len(urls) == 3
    for url in urls:
        with client.get(url) as answer:
            assert answer.status_code == 200
            assert "max-age=31536000" in answer.headers["Cache-Control"]
            version = re.search(r"\?v=([0-9a-f]{12})$", url).group(1)
            assert version == hashlib.sha256(answer.get_data()).hexdigest()[:12]  # a new file, a new URL
