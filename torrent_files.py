"""A torrent's files on disk: libtorrent's add parameters and file lists, .part names, fsync, free space."""
import os
import re
import shutil

import libtorrent as lt

SYNCED_KEY = b"hashdrop-synced"  # in resume data saved after the files were fsynced; libtorrent ignores it
FULL_DISK_BYTES = 16 * 1024 * 1024  # less free than this at an I/O error: the disk is full
NAME_MAX = 255
MAX_TORRENT_BYTES = 10 * 1024 * 1024  # the largest .torrent file taken, from the form, a URL or the watch folder


def info_hash_keys(info_hashes):
    """Return the hex strings (v1 and/or v2) that identify a torrent's info_hash_t."""
    keys = []
    if info_hashes.has_v1():
        keys.append(str(info_hashes.v1))
    if info_hashes.has_v2():
        keys.append(str(info_hashes.v2))
    return keys


def describe_torrent(data):
    """Read a .torrent file's bytes: (v1 hex or None, v2 hex or None, name). Raises ValueError."""
    if not data:
        raise ValueError("the file is empty")
    try:
        info = lt.torrent_info(data)
    except RuntimeError as exc:
        raise ValueError(str(exc).split(" [")[0]) from None
    hashes = info.info_hashes()
    v1 = str(hashes.v1) if hashes.has_v1() else None
    v2 = str(hashes.v2) if hashes.has_v2() else None
    return v1, v2, info.name()


def file_list(handle):
    """The files of a torrent with metadata (index, path, path on disk, size, progress, wanted),
    by path as a person sorts them, not in the torrent's own order."""
    files, named = named_files(handle)
    done = handle.file_progress(lt.torrent_handle.piece_granularity)
    priorities = handle.get_file_priorities()
    listing = []
    for index, path, on_disk in named:
        size = files.file_size(index)
        listing.append({
            "index": index,
            "path": path,
            "path_on_disk": on_disk,  # path + ".part" while unfinished
            "size": size,
            "progress": round(done[index] / size, 4) if size else 1.0,
            "wanted": priorities[index] > 0,
        })
    return sorted(listing, key=lambda entry: natural_order(entry["path"]))


def wanted_files(handle):
    """(path as in the torrent, size) of each wanted file, padding left out."""
    files = handle.torrent_file().layout()
    priorities = handle.get_file_priorities()
    return [(path, files.file_size(index)) for index, path in real_files(files) if priorities[index] > 0]


def natural_order(text):
    """A sort key that puts "E2" before "E10", in any case: episodes in the order they air."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", text)]


def set_wanted_files(handle, wanted):
    """Download only the files whose indices are in wanted."""
    count = handle.torrent_file().layout().num_files()
    handle.prioritize_files([4 if index in wanted else 0 for index in range(count)])


def params_from_magnet(magnet):
    return lt.parse_magnet_uri(magnet)


def params_from_torrent(data):
    return lt.load_torrent_buffer(data)


def params_from_resume(data):
    return lt.read_resume_data(data)


def has_metadata(params):
    return params.ti is not None


def set_flag(target, name, on):
    """Set or clear one torrent flag on add parameters or on a torrent handle."""
    flag = getattr(lt.torrent_flags, name)
    if isinstance(target, lt.torrent_handle):
        if on:
            target.set_flags(flag)
        else:
            target.unset_flags(flag)
    else:
        target.flags = (target.flags | flag) if on else (target.flags & ~flag)


def vouch(data):
    """Mark encoded resume data as saved once its torrent's files were fsynced (see jobs/durability.py)."""
    entry = lt.bdecode(data)
    entry[SYNCED_KEY] = 1
    return lt.bencode(entry)


def vouched(data):
    """Whether encoded resume data carries vouch()'s mark."""
    entry = lt.bdecode(data)
    return isinstance(entry, dict) and entry.get(SYNCED_KEY) == 1


def data_missing(params, save_path):
    """True if resume data says pieces are done but not one of the torrent's files is on disk."""
    if params.ti is None or not any(params.have_pieces):
        return False
    renamed = params.renamed_files
    return not any(os.path.exists(os.path.join(save_path, renamed.get(index, path)))
                   for index, path in real_files(params.ti.layout()))


def real_files(files):
    """(index, path as in the torrent) of each file of a file_storage that is not padding."""
    return [(index, files.file_path(index)) for index in range(files.num_files())
            if not files.file_flags(index) & lt.file_storage.flag_pad_file]


def named_files(handle):
    """A torrent's file_storage, and (index, path as in the torrent, path on disk now) of each
    file that is not padding: the two paths differ for a file renamed to <name><suffix>."""
    files = handle.torrent_file().layout()
    renamed = handle.get_renamed_files()
    return files, [(index, path, renamed.file_path(files, index)) for index, path in real_files(files)]



# Unfinished files -----------------------------------------------------------------------
# While a file downloads it is named <name><suffix> (HASHDROP_PART_SUFFIX, ".part" unless set),
# so a media server scanning the save path does not take it for a whole film. hashdrop renames
# no file for any other reason, so a file whose name is not its torrent's name is marked.

def mark_partial(handle, suffix, skip=()):
    """Give each wanted file that is not complete, and not marked yet, the suffix; return their indices."""
    files, named = named_files(handle)
    done = handle.file_progress(lt.torrent_handle.piece_granularity)
    priorities = handle.get_file_priorities()
    taken = {path for _, path, _ in named}
    indices = []
    for index, path, on_disk in named:
        if priorities[index] > 0 and done[index] < files.file_size(index) and index not in skip \
                and on_disk == path and can_mark(path, suffix, taken):
            handle.rename_file(index, path + suffix)
            indices.append(index)
    return indices


def mark_before_download(handle, save_path, suffix, wanted=None):
    """As a torrent's files become known or wanted, before any of their bytes: name <name><suffix>
    each file (in wanted, else every file) that is under neither name on disk, and take back one
    kept under <name><suffix> (a job removed with its files kept, and added again). Return the
    indices renamed and whether kept data was found: libtorrent found no file under the names
    it knew, so it must check the files again."""
    files, named = named_files(handle)
    taken = {path for _, path, _ in named}
    indices, kept = [], False
    for index, path, on_disk in named:
        if (wanted is not None and index not in wanted) or on_disk != path \
                or not files.file_size(index) or not can_mark(path, suffix, taken) \
                or os.path.exists(os.path.join(save_path, path)):
            continue
        kept = kept or os.path.exists(os.path.join(save_path, path + suffix))
        handle.rename_file(index, path + suffix)  # no file yet: libtorrent only notes the name
        indices.append(index)
    return indices, kept


def can_mark(path, suffix, taken):
    """Whether <path><suffix> can name a file: it fits, and is not one of the torrent's paths (taken)."""
    return bool(suffix) and name_fits(path + suffix) and path + suffix not in taken


def name_fits(path):
    """Whether a path's last part fits in a file name: 255 bytes on ext4, XFS, Btrfs and ZFS.

    libtorrent cuts a longer name to about 250 bytes (torrent_info.cpp), so ".part" fits any
    name it keeps; a longer suffix may not, and the first write would fail.
    """
    return len(os.fsencode(os.path.basename(path))) <= NAME_MAX


def unmark_complete(handle, skip=()):
    """Give each complete file that is marked its torrent's name back; return their indices."""
    files, named = named_files(handle)
    done = handle.file_progress(lt.torrent_handle.piece_granularity)
    indices = []
    for index, path, on_disk in named:
        if done[index] == files.file_size(index) and on_disk != path and index not in skip:
            handle.rename_file(index, path)
            indices.append(index)
    return indices


def mark_for_move(handle, save_path, suffix, skip=()):
    """Give each file on disk under its own name the suffix before the torrent's files move into
    the library: across disks libtorrent copies a file under the name it has, and a media server
    would find a half-copied film under its own name. Return the indices renamed."""
    _, named = named_files(handle)
    taken = {path for _, path, _ in named}
    indices = []
    for index, path, on_disk in named:
        if on_disk == path and index not in skip and can_mark(path, suffix, taken) \
                and os.path.exists(os.path.join(save_path, path)):
            handle.rename_file(index, path + suffix)
            indices.append(index)
    return indices


def move_storage(handle, path):
    """Have libtorrent move the torrent's files into path (it renames, or across disks copies then
    deletes) and seed from there; it posts storage_moved_alert or storage_moved_failed_alert.

    fail_if_exist, not dont_replace: dont_replace skips a file whose name is taken in path and points
    the torrent at the file found there, which it would then check and download into; fail_if_exist
    looks at every name first and moves nothing if one is taken."""
    handle.move_storage(path, lt.move_flags_t.fail_if_exist)


def match_names_on_disk(params, save_path, suffix):
    """Point resume data at each file where it is on disk, marked or not.

    Resume data can lag a rename by up to a save interval, and a crash can come in between:
    libtorrent would then look for a file under the other name and find nothing.
    """
    if params.ti is None:
        return
    files = params.ti.layout()
    renamed = dict(params.renamed_files)
    paths = real_files(files)
    taken = {path for _, path in paths}
    for index, path in paths:
        names = [renamed.get(index, path), path, path + suffix]
        found = next((name for name in names if os.path.exists(os.path.join(save_path, name))), None)
        if found == path:
            renamed.pop(index, None)
        elif found is not None:
            renamed[index] = found
        elif files.file_size(index) and can_mark(path, suffix, taken):
            renamed[index] = path + suffix  # not on disk yet: its first byte lands in <name><suffix>
    params.renamed_files = renamed


def drop_piece_claims(params):
    """Forget which pieces resume data says are done: libtorrent then checks the files on disk."""
    params.have_pieces = []
    params.verified_pieces = []
    params.unfinished_pieces = {}


def sync_files(handle, save_path):
    """fsync every file of the torrent that exists, so its pieces survive a power loss."""
    if handle.torrent_file() is None:  # no metadata: no files
        return
    _, named = named_files(handle)
    for _, _, on_disk in named:
        try:
            fd = os.open(os.path.join(save_path, on_disk), os.O_RDONLY)
        except FileNotFoundError:  # an unwanted file that was never created
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def disk_is_full(path):
    """True if the file system holding path has less than FULL_DISK_BYTES free for this user."""
    free = free_bytes(os.path.dirname(path) or ".")
    return free is not None and free < FULL_DISK_BYTES


def same_disk(one, other):
    """Whether two folders (or the nearest folders above them that exist) are on one file system:
    a move between them is a rename."""
    return os.stat(existing_folder(one)).st_dev == os.stat(existing_folder(other)).st_dev


def existing_folder(directory):
    """directory, or the nearest folder above it that exists (a fresh install's save path)."""
    path = os.path.abspath(directory)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def free_bytes(directory):
    """Bytes free for this user on the file system that holds directory (or will, once it is
    made: a fresh install's save path), or None if it cannot say."""
    try:
        return shutil.disk_usage(existing_folder(directory)).free
    except OSError:
        return None



# Where files go ---------------------------------------------------------------------------

def resolves_inside(path, root):
    """Whether path, with every symlink on the way resolved, is root or inside it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def existing_name(save_path, path, suffix, renamed=None):
    """The name a torrent's file has on disk (its name as renamed, its own, or marked), or None."""
    for name in dict.fromkeys(name for name in (renamed, path, path + suffix if suffix else None) if name):
        if os.path.lexists(os.path.join(save_path, name)):
            return name
    return None


def names_in(folder):
    """The names in a folder (none if it is not there yet)."""
    try:
        return os.listdir(folder)
    except OSError:
        return []


def tracker_entries(handle):
    """Each tracker of a torrent, first tier first: its URL and tier, what it last said, and the
    swarm it last reported (-1 where it never said)."""
    entries = []
    for tracker in sorted(handle.trackers(), key=lambda entry: entry["tier"]):
        answers = [answer for endpoint in tracker.get("endpoints", [])
                   for answer in endpoint.get("info_hashes", [])]
        entries.append({
            "url": tracker["url"], "tier": tracker["tier"], "message": tracker.get("message") or "",
            "fails": tracker.get("fails", 0), "updating": any(a.get("updating") for a in answers),
            "announced": any(a.get("start_sent") for a in answers),
            "seeders": max((a.get("scrape_complete", -1) for a in answers), default=-1),
            "leechers": max((a.get("scrape_incomplete", -1) for a in answers), default=-1),
            "downloads": max((a.get("scrape_downloaded", -1) for a in answers), default=-1),
            "next_announce": max((a.get("next_announce") or 0 for a in answers), default=0),
        })
    return entries


# libtorrent's peer flag for a uTP connection; its Python binding names it in some builds only.
UTP_SOCKET = getattr(lt.peer_info, "utp_socket", 0)


def peer_entries(handle):
    """Each peer the torrent is connected to: address, client, progress and rates (bytes/s)."""
    peers = []
    for peer in handle.get_peer_info():
        client = peer.client.decode("utf-8", "replace") if isinstance(peer.client, bytes) else peer.client
        peers.append({
            "address": peer.ip[0], "port": peer.ip[1], "client": client, "progress": peer.progress,
            "down": peer.payload_down_speed, "up": peer.payload_up_speed,
            "seed": bool(peer.flags & lt.peer_info.seed),
            "incoming": not peer.flags & lt.peer_info.outgoing_connection,
            "utp": bool(peer.flags & UTP_SOCKET),
            "choked": bool(peer.flags & lt.peer_info.choked),
            "remote_choked": bool(peer.flags & lt.peer_info.remote_choked),
            "interesting": bool(peer.flags & lt.peer_info.interesting),
            "remote_interested": bool(peer.flags & lt.peer_info.remote_interested),
            "encrypted": bool(peer.flags & (lt.peer_info.rc4_encrypted | lt.peer_info.plaintext_encrypted)),
        })
    return peers


def magnet_link(handle):
    return lt.make_magnet_uri(handle)


def set_rate_limits(handle, download=None, upload=None):
    """A torrent's own rate limits in bytes/s; 0 for none (libtorrent's -1)."""
    if download is not None:
        handle.set_download_limit(download or -1)
    if upload is not None:
        handle.set_upload_limit(upload or -1)
