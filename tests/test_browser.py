"""The page in real headless Chromium: log in, paste, watch progress live, pause, resume, remove."""
import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.swarm]

MiB = 1024 * 1024
PASSWORD = "correct horse battery staple"
NOBODY_HAS = "fe" * 20


@pytest.fixture
def page(browser):
    """A fresh page that records what the console says."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.console_messages = []
    page.on("console", lambda message: page.console_messages.append(message.text))
    yield page
    context.close()


def log_in(page, url):
    page.goto(url + "/")
    page.fill("#username", "admin")
    page.fill("#password", PASSWORD)
    page.click("form.login button")


def test_paste_watch_pause_resume_remove(live_server, tracker, seed_new, page):
    from playwright.sync_api import expect

    fast, slow = seed_new(3 * MiB, upload_limit=MiB), seed_new(4 * MiB, upload_limit=256 * 1024)
    url = live_server(TRACKERS=[tracker.announce_url], PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True)
    log_in(page, url)
    page.evaluate("window.stillTheSamePage = true")

    page.fill("#downloads", f"{fast.info_hash}\n{slow.info_hash}")
    page.click("form.submit button")
    expect(page.locator("#messages")).to_contain_text("Started 2 downloads:")
    expect(page.locator("#downloads")).to_have_value("")  # everything was taken

    fast_row, slow_row = page.locator(f"#job-{fast.info_hash}"), page.locator(f"#job-{slow.info_hash}")
    expect(fast_row.locator(".title")).to_have_text(fast.name, timeout=20000)
    expect(fast_row.locator(".percent")).to_have_text("100.0 %", timeout=30000)
    expect(fast_row.locator(".state")).to_contain_text("Completed")
    expect(fast_row.locator(".where")).to_contain_text("downloads")

    expect(slow_row.locator(".state")).to_contain_text("Downloading", timeout=20000)
    slow_row.locator("button", has_text="Pause").click()
    expect(slow_row.locator(".state")).to_contain_text("Paused")
    expect(page.locator("#messages")).to_have_text(f"Paused {slow.name}.")  # the button's own message, alone
    slow_row.locator("button", has_text="Resume").click()
    expect(slow_row.locator(".state")).to_contain_text("Downloading")

    page.once("dialog", lambda dialog: dialog.accept())
    slow_row.locator("button", has_text="Remove + delete files").click()
    expect(slow_row).to_have_count(0)
    expect(fast_row).to_have_count(1)

    assert page.evaluate("window.stillTheSamePage") is True  # no reload happened
    assert not [text for text in page.console_messages if "Content Security Policy" in text]


def test_bad_lines_keep_the_paste(live_server, page):
    from playwright.sync_api import expect

    url = live_server(PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True)
    log_in(page, url)
    page.fill("#downloads", f"{NOBODY_HAS}\nnot a hash at all")
    page.click("form.submit button")
    expect(page.locator("#messages")).to_contain_text("not a hash at all")
    expect(page.locator("#messages")).to_contain_text("Started 1 download:")
    expect(page.locator("#downloads")).to_have_value(f"{NOBODY_HAS}\nnot a hash at all")
    expect(page.locator(f"#job-{NOBODY_HAS} .state")).to_contain_text("Fetching metadata")


def test_screenshot_with_jobs_in_several_states(live_server, tracker, seed_new, page, tmp_path):
    """Completed, downloading, queued, paused and fetching metadata, in one picture.

    README's picture comes from docs/screenshot.py, which stages the same with film titles.
    """
    from playwright.sync_api import expect

    done, running, waiting, held = (seed_new(2 * MiB), seed_new(64 * MiB, upload_limit=512 * 1024),
                                    seed_new(64 * MiB, upload_limit=512 * 1024), seed_new(3 * MiB))
    url = live_server(TRACKERS=[tracker.announce_url], PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True,
                      MAX_ACTIVE=1)
    log_in(page, url)
    page.fill("#downloads", done.info_hash)
    page.click("form.submit button")
    expect(page.locator(f"#job-{done.info_hash} .state")).to_contain_text("Completed", timeout=30000)
    expect(page.locator("#downloads")).to_have_value("")
    page.fill("#downloads", f"{running.magnet()}\n{waiting.info_hash}\n{NOBODY_HAS}")
    page.click("form.submit button")
    expect(page.locator("#messages")).to_contain_text("Started 3 downloads:")
    page.fill("#downloads", held.info_hash)
    page.check("input[name=paused]")
    page.click("form.submit button")
    expect(page.locator(f"#job-{held.info_hash} .state")).to_contain_text("Paused")
    states = page.locator("#jobs .state")
    # One slot: whichever of the two got its metadata first downloads, the other queues.
    expect(page.locator("#jobs .state", has_text="Queued")).to_have_count(1, timeout=20000)
    expect(page.locator("#jobs .state", has_text="Downloading")).to_have_count(1)
    expect(page.locator(f"#job-{NOBODY_HAS} .state")).to_contain_text("Fetching metadata")
    expect(states).to_have_count(5)
    page.fill("#downloads", "0123456789abcdef0123456789abcdef0123456\nmagnet:?dn=no-hash")
    page.click("form.submit button")
    expect(page.locator("#messages")).to_contain_text("Skipped")
    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10000
    page.evaluate("window.stillTheSamePage = true")
    page.click(".filters a:has-text('Paused')")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator(f"#job-{held.info_hash} .state")).to_contain_text("Paused")
    # In place: the table and the search box were swapped, the page was not loaded again.
    expect(page).to_have_url(re.compile(r"show=paused"))
    expect(page.locator("#search input[name=show]")).to_have_value("paused")
    assert page.evaluate("window.stillTheSamePage") is True


def test_on_a_phone_the_page_fits_its_width(live_server, tracker, seed_new, page):
    """The table was 1,040 px wide at 390: a phone showed a third of it and scrolled sideways."""
    from playwright.sync_api import expect

    done = seed_new(MiB)
    url = live_server(TRACKERS=[tracker.announce_url])
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(url + "/")
    page.fill("#downloads", f"{done.info_hash}\n{NOBODY_HAS}")
    page.click("form.submit button")
    expect(page.locator(f"#job-{done.info_hash} .state")).to_contain_text("Completed", timeout=30000)
    expect(page.locator(f"#job-{NOBODY_HAS} .state")).to_contain_text("Fetching metadata")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    row = page.locator(f"#job-{done.info_hash}")
    for label in ("Size", "Down", "Up", "Peers", "ETA"):  # the column heads are hidden: each figure says what it is
        assert row.locator(f"td[data-label={label}]").is_visible()
    assert row.locator("button", has_text="Remove + delete files").is_visible()


def test_files_page_chooses_all_or_none_at_once(live_server, tracker, seed_new, page, tmp_path):
    """A season pack has dozens of files: choosing a few went one box at a time."""
    from playwright.sync_api import expect

    torrent = seed_new({f"Show S01E0{n}.mkv": 64 * 1024 for n in range(1, 6)})
    torrent_file = tmp_path / "season.torrent"
    torrent_file.write_bytes(torrent.data)
    url = live_server(TRACKERS=[tracker.announce_url])
    page.goto(url + "/")
    page.set_input_files("input[name=torrents]", str(torrent_file))
    page.check("input[name=paused]")
    page.click("form.submit button")
    page.locator(f"#job-{torrent.info_hash} a", has_text="Files").click()
    boxes = page.locator("#files input[name=wanted]")
    expect(boxes).to_have_count(5)
    names = [text.split("\n")[0].rsplit("/", 1)[-1] for text in page.locator("#files td.path").all_inner_texts()]
    assert names == [f"Show S01E0{n}.mkv" for n in range(1, 6)]  # in order, whatever the torrent's
    page.click("button[data-choose=none]")
    boxes.nth(1).check()
    page.click("form.files button[type=submit]")
    expect(boxes.nth(1)).to_be_checked()
    assert [boxes.nth(i).is_checked() for i in range(5)] == [False, True, False, False, False]
    page.click("button[data-choose=all]")
    page.click("form.files button[type=submit]")
    expect(boxes.nth(0)).to_be_checked()
    assert all(boxes.nth(i).is_checked() for i in range(5))


def test_a_magnet_link_handed_over_by_the_browser_fills_the_form(live_server, tracker, seed_new, page):
    """/?paste= is where the browser sends a clicked magnet link once hashdrop handles them."""
    import urllib.parse

    from playwright.sync_api import expect

    torrent = seed_new(MiB)
    url = live_server(TRACKERS=[tracker.announce_url], PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{url}/?paste={urllib.parse.quote(torrent.magnet(), safe='')}")
    page.fill("#username", "admin")  # the login keeps where the link was going
    page.fill("#password", PASSWORD)
    page.click("form.login button")
    expect(page.locator("#downloads")).to_have_value(torrent.magnet())
    expect(page.locator(f"#job-{torrent.info_hash}")).to_have_count(0)  # nothing starts by itself
    offer = page.locator("#handle-magnets")
    expect(offer).to_be_visible()  # 127.0.0.1 is a secure context
    offer.click()
    expect(offer).not_to_have_text("Open magnet links with hashdrop")
    page.click("form.submit button[type=submit]")
    expect(page.locator(f"#job-{torrent.info_hash} .state")).to_contain_text("Completed", timeout=30000)
    assert errors == []


def luminance(css_color):
    """The relative luminance (0 black, 1 white) of a computed "rgb(r, g, b)" colour."""
    red, green, blue = (int(part) / 255 for part in css_color[css_color.index("(") + 1:-1].split(",")[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_the_page_follows_the_systems_light_or_dark_preference(live_server, tracker, seed_new, browser,
                                                               tmp_path, scheme):
    from playwright.sync_api import expect

    done = seed_new(MiB)
    url = live_server(TRACKERS=[tracker.announce_url])
    context = browser.new_context(viewport={"width": 1280, "height": 700}, color_scheme=scheme)
    try:
        page = context.new_page()
        page.goto(url + "/")
        page.fill("#downloads", f"{done.info_hash}\n{NOBODY_HAS}")
        page.click("form.submit button")
        expect(page.locator(f"#job-{done.info_hash} .state")).to_contain_text("Completed", timeout=30000)
        page.screenshot(path=str(tmp_path / f"{scheme}.png"), full_page=True)
        colours = page.evaluate("""() => Object.fromEntries(
            [["page", "body"], ["table", "#jobs table"], ["form", "form.submit"], ["paste", "#downloads"],
             ["name", "#jobs .title"]].map(([key, selector]) => {
                const style = getComputedStyle(document.querySelector(selector));
                return [key, [style.backgroundColor, style.color]];
            }))""")
    finally:
        context.close()
    backgrounds = [luminance(colours[key][0]) for key in ("page", "table", "form", "paste")]
    texts = [luminance(colours[key][1]) for key in ("page", "name", "paste")]
    if scheme == "dark":
        assert max(backgrounds) < 0.15 and min(texts) > 0.6, colours
    else:
        assert min(backgrounds) > 0.9 and max(texts) < 0.2, colours


def test_the_table_follows_changes_made_elsewhere_through_its_poll(live_server, page):
    """A script pauses one job and removes another: the open page shows both through its poll,
    which swaps the paused job's row alone and leaves the others' as they are."""
    import json
    import urllib.request

    from playwright.sync_api import expect
    from swarm import wait_until

    url = live_server()
    first, second, third = "fe" * 20, "fd" * 20, "fc" * 20

    def api(path, method="GET"):
        request = urllib.request.Request(url + path, method=method, headers={"X-Hashdrop": "1"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return json.loads(body) if body else None

    page.goto(url + "/")
    page.fill("#downloads", f"{first}\n{second}\n{third}")
    page.click("form.submit button")
    expect(page.locator("#jobs tbody tr")).to_have_count(3)
    # Once every job's first statuses are in and the page has polled past them, no row changes.
    token = api("/api/jobs?since=")["token"]

    def quiet():
        nonlocal token
        asked, answer = token, api(f"/api/jobs?since={token}")
        token = answer["token"]
        return not answer["jobs"] and asked

    quiet_version = int(wait_until(quiet, 20, "the jobs kept changing").split(".")[1])

    def polled_version():
        poll = page.get_attribute("#jobs-poll", "hx-get") or ""
        found = re.search(r"since=[0-9a-f]+\.([0-9]+)", poll)
        return int(found.group(1)) if found else -1

    wait_until(lambda: polled_version() >= quiet_version, 10, "the page did not poll")
    page.evaluate(f"document.getElementById('job-{first}').untouched = true")

    api(f"/api/jobs/{second}/pause", "POST")
    expect(page.locator(f"#job-{second} .state")).to_contain_text("Paused")
    expect(page.locator(".filters a", has_text="Paused")).to_contain_text("1")
    assert page.evaluate(f"document.getElementById('job-{first}').untouched") is True  # not rendered again

    api(f"/api/jobs/{third}", "DELETE")
    expect(page.locator(f"#job-{third}")).to_have_count(0)
    expect(page.locator("#jobs tbody tr")).to_have_count(2)
    expect(page.locator(f"#job-{second} .state")).to_contain_text("Paused")
    expect(page.locator(".pages").first).to_contain_text("2 downloads")
    assert not [text for text in page.console_messages if "htmx" in text], page.console_messages


def test_a_declined_confirm_sends_nothing(live_server, page):
    """"Remove + delete files" asks first: a No leaves the job, and the page, as they were."""
    from playwright.sync_api import expect

    url = live_server(PASSWORD=PASSWORD, WTF_CSRF_ENABLED=True)
    log_in(page, url)
    page.fill("#downloads", NOBODY_HAS)
    page.click("form.submit button")
    row = page.locator(f"#job-{NOBODY_HAS}")
    expect(row.locator(".state")).to_contain_text("Fetching metadata")
    page.evaluate("window.stillTheSamePage = true")
    requests = []
    page.on("request", lambda request: requests.append(request) if request.method == "POST" else None)

    page.once("dialog", lambda dialog: dialog.dismiss())
    row.locator("button", has_text="Remove + delete files").click()
    page.wait_for_timeout(500)
    assert requests == []
    expect(row).to_have_count(1)

    row.locator("button", has_text="Pause").click()  # the row's other buttons still post, in place
    expect(row.locator(".state")).to_contain_text("Paused")
    assert page.evaluate("window.stillTheSamePage") is True


def test_rows_per_page_switch_in_place_and_hold_while_the_table_changes(live_server, page):
    """60 jobs: 25 rows, then 50 at a click, in place; the poll and a button keep the 50."""
    from playwright.sync_api import expect

    url = live_server()
    hashes = [f"{number:040x}" for number in range(1, 61)]
    page.goto(url + "/")
    page.fill("#downloads", "\n".join(hashes))
    page.check("input[name=paused]")
    page.click("form.submit button")
    expect(page.locator("#messages")).to_contain_text("Started 60 downloads")
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(25)
    expect(page.locator(".pages").first).to_contain_text("page 1 of 3")
    page.evaluate("window.stillTheSamePage = true")

    page.locator(".pages .per a", has_text="50").click()
    expect(rows).to_have_count(50)
    expect(page.locator(".pages").first).to_contain_text("page 1 of 2")
    assert page.url.endswith("/?per=50")
    expect(page.locator(".pages .per a[aria-current]")).to_have_text("50")

    newest = hashes[-1]
    page.locator(f"#job-{newest} button", has_text="Resume").click()
    expect(page.locator(f"#job-{newest} .state")).to_contain_text("Fetching metadata")
    page.locator(f"#job-{newest} button", has_text="Pause").click()
    expect(page.locator(f"#job-{newest} .state")).to_contain_text("Paused")
    expect(rows).to_have_count(50)  # the button's answer kept 50 a page
    page.locator(".pages a[rel=next]").first.click()
    expect(rows).to_have_count(10)
    assert page.url.endswith("/?page=2&per=50")
    assert page.evaluate("window.stillTheSamePage") is True
