"""Helpers shared by the test modules: info hashes no peer will ever answer, the page's
flashed messages, and a finished torrent's status."""

HASH_A = "a" * 40
HASH_B = "0123456789abcdef0123456789abcdef01234567"
HASH_C = "c" * 40

FINISHED = {"total_wanted": 10, "total_wanted_done": 10, "download_rate": 0, "upload_rate": 0,
            "all_time_upload": 0, "all_time_download": 10, "peers": 0, "seeds": 0, "finished": True}


def flashes(client):
    page = client.get("/").get_data(as_text=True)
    return page
