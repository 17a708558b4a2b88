"""jobs.folder_names: a save path listed once for the many magnets added while it stays as it was,
and listed again as soon as it changed."""
import os
import time

from jobs.folder_names import SETTLED_NS, FolderNames


def settle(folder):
    """Date the folder's last change well before now, as a library untouched for a while is."""
    past = time.time_ns() - 10 * SETTLED_NS
    os.utime(folder, ns=(past, past))


def test_a_folder_that_stays_as_it_was_is_listed_once_and_shared(tmp_path):
    (tmp_path / "Film (2001)").mkdir()
    settle(tmp_path)
    folder_names = FolderNames()
    first = folder_names.names(str(tmp_path))
    assert first == {"Film (2001)"}
    assert folder_names.names(str(tmp_path)) is first
    assert folder_names.names_in_all([str(tmp_path)]) is first


def test_a_name_added_after_the_listing_is_seen(tmp_path):
    settle(tmp_path)
    folder_names = FolderNames()
    assert folder_names.names(str(tmp_path)) == frozenset()
    (tmp_path / "Show S01E01.mkv").write_bytes(b"")
    assert folder_names.names(str(tmp_path)) == {"Show S01E01.mkv"}
    os.remove(tmp_path / "Show S01E01.mkv")
    assert folder_names.names(str(tmp_path)) == frozenset()


def test_a_folder_changed_just_before_its_listing_is_listed_again(tmp_path):
    """Its time could stay the same through one more change in the same clock tick."""
    (tmp_path / "a").write_bytes(b"")  # changed now: not settled
    folder_names = FolderNames()
    first = folder_names.names(str(tmp_path))
    again = folder_names.names(str(tmp_path))
    assert again == first == {"a"}
    assert again is not first


def test_several_folders_and_a_missing_one(tmp_path):
    (tmp_path / "incomplete").mkdir()
    (tmp_path / "incomplete" / "x").write_bytes(b"")
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "y").write_bytes(b"")
    folder_names = FolderNames()
    folders = [str(tmp_path / "incomplete"), str(tmp_path / "library"), str(tmp_path / "not-yet")]
    assert folder_names.names_in_all(folders) == {"x", "y"}
