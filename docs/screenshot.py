"""Take README's screenshot: the page with jobs in every state, from a real swarm on loopback.

    .venv/bin/python docs/screenshot.py docs/screenshot.png [--phone docs/screenshot-phone.png] [--save-path /srv/media]

It runs the test swarm (opentracker on 127.0.0.1, a seeder on 127.0.0.2; tests/swarm.py) and the
app on loopback with discovery off, pastes magnets into the form with Debian's Chromium, and
saves the page once one download is partway. The films are random bytes under real titles.
"""
import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from werkzeug.serving import make_server  # noqa: E402

from app import create_app  # noqa: E402
from conftest import CHROMIUM_FLAGS, HERMETIC  # noqa: E402
from swarm import Seeder, Tracker, make_payload, make_torrent, wait_until  # noqa: E402

MiB = 1024 * 1024
CATEGORY = "Movies"


def film(root, tracker, title, size):
    """A torrent of one film folder (video and subtitles) under a real title, random content."""
    files = {f"{title}.mkv": size, f"{title}.en.srt": 48 * 1024}
    torrent = make_torrent(make_payload(root, title, files, seed=title), tracker.announce_url)
    tracker.add(torrent)
    return torrent


def serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def paste(page, magnets, paused=False):
    page.fill("#downloads", "\n".join(magnets))
    page.fill("input[name=category]", CATEGORY)
    page.set_checked("input[name=paused]", paused)
    page.click("form.submit button")
    page.wait_for_selector("#messages")


def state_of(page, torrent):
    return page.locator(f"#job-{torrent.info_hash} .state").inner_text().split("\n")[0].strip()


def percent(page, torrent):
    return float(page.locator(f"#job-{torrent.info_hash} .percent").inner_text().split()[0])


def take(out, phone, save_path, work):
    from playwright.sync_api import sync_playwright

    with Tracker() as tracker, Seeder(log_dir=work) as seeder:
        done = film(work / "seed", tracker, "Night of the Living Dead (1968)", 12 * MiB)
        running = film(work / "seed", tracker, "Sintel (2010)", 160 * MiB)
        waiting = film(work / "seed", tracker, "Big Buck Bunny (2008)", 96 * MiB)
        held = film(work / "seed", tracker, "Elephants Dream (2006)", 8 * MiB)
        nobody = film(work / "seed", tracker, "Tears of Steel (2012)", 8 * MiB)  # no seed: no metadata
        seeder.add(done)
        seeder.add(running, upload_limit=2 * MiB)
        seeder.add(waiting, upload_limit=2 * MiB)
        seeder.add(held)
        app = create_app({**HERMETIC, "SAVE_PATH": str(save_path), "DATA_DIR": str(work / "data"),
                          "MAX_ACTIVE": 1, "SECRET_KEY": "screenshot"})
        server, url = serve(app)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(url)
                paste(page, [done.magnet()])
                wait_until(lambda: state_of(page, done) == "Completed", 60, "the first film did not complete")
                paste(page, [held.magnet()], paused=True)
                paste(page, [running.magnet(), waiting.magnet(), nobody.magnet()])
                # One slot: whichever film gets its metadata first downloads, the other queues.
                wait_until(lambda: {state_of(page, running), state_of(page, waiting)} == {"Downloading", "Queued"},
                           30, "not one film downloading and one queued")
                wait_until(lambda: max(percent(page, running), percent(page, waiting)) >= 15, 120,
                           "the downloading film did not get far")
                time.sleep(2.5)  # a rate measured over the 2 s window, as a person would see it
                page.screenshot(path=str(out), full_page=True)
                if phone:
                    page.set_viewport_size({"width": 390, "height": 844})
                    page.screenshot(path=str(phone), full_page=True)
                browser.close()
        finally:
            server.shutdown()
            app.extensions["hashdrop"].shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--phone", type=Path, help="also take the page 390 px wide, as on a phone")
    parser.add_argument("--save-path", type=Path, help="where the films go (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hashdrop-screenshot-") as work:
        work = Path(work)
        take(args.out.resolve(), args.phone and args.phone.resolve(), args.save_path or work / "downloads", work)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
