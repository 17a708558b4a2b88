"""HASHDROP_UMASK: the modes of the files and folders a real download makes, and the setting's checks."""
import os
import stat

import pytest

from config import DEFAULTS, ConfigError
from swarm import check_files, wait_for_state

MiB = 1024 * 1024


@pytest.fixture
def restore_umask():
    """The umask is the process's: put back what it was, for the tests after."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


def modes(root):
    """{path relative to root: permission bits} of everything under root."""
    found = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = stat.S_IMODE(os.stat(path).st_mode)
    return found


@pytest.mark.swarm
@pytest.mark.parametrize("umask, file_mode, folder_mode", [
    (None, 0o644, 0o755),  # the default, 022: a media server running as another user reads them
    ("002", 0o664, 0o775),  # a media server in the same group may also rename and delete
    ("027", 0o640, 0o750),  # only the group may read
])
def test_a_completed_download_has_the_modes_the_umask_gives(make_app, tracker, seed_new, restore_umask,
                                                          umask, file_mode, folder_mode):
    torrent = seed_new({"film.mkv": MiB, "extras/making-of.mkv": 300000})
    app = make_app(TRACKERS=[tracker.announce_url], **({"UMASK": umask} if umask else {}))
    app.test_client().post("/api/jobs", json={"hashes": [torrent.info_hash], "category": "films"})
    wait_for_state(app, torrent.info_hash, "completed")
    save_path = os.path.join(app.config["SAVE_PATH"], "films")
    check_files(torrent, save_path)
    assert modes(app.config["SAVE_PATH"]) == {
        "films": folder_mode, f"films/{torrent.name}": folder_mode, f"films/{torrent.name}/extras": folder_mode,
        f"films/{torrent.name}/film.mkv": file_mode, f"films/{torrent.name}/extras/making-of.mkv": file_mode,
    }
    assert stat.S_IMODE(os.stat(app.config["DATA_DIR"]).st_mode) == 0o700  # the data dir stays private


@pytest.mark.parametrize("value", ["999", "0o22", "abc", "", "07777"])
def test_a_umask_that_is_not_octal_is_refused(make_app, restore_umask, value):
    assert DEFAULTS["UMASK"] == "022"
    with pytest.raises(ConfigError, match="HASHDROP_UMASK must be an octal umask such as 022"):
        make_app(UMASK=value)
