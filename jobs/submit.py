"""What a submit makes of its input: the category's folder, uploaded .torrent files, new jobs."""
import functools
import os
import re
from dataclasses import dataclass

import hashes
import torrent_files
from jobs.model import Job, JobError, JobState, SubmitResult

# Control characters (line breaks and tabs too) and lone surrogates: no folder name needs them,
# a log or a listing would show them as something else, and a surrogate cannot even be encoded.
NOT_IN_A_FOLDER_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_category(save_root, category, download_root=None):
    """A category is a subfolder of the save path (and of the incomplete folder, download_root,
    where jobs download first); refuse any that would leave either."""
    category = folder_in(save_root, category)
    if download_root and download_root != save_root:
        folder_in(download_root, category)
    return category


def folder_in(save_root, category):
    """The category as a folder inside save_root, or a JobError."""
    bad = NOT_IN_A_FOLDER_NAME.search(category or "")
    if bad:
        raise JobError(f"The category {category!r} contains U+{ord(bad.group()):04X}, a control "
                       "character or broken Unicode: it must be a plain folder name inside the save path.")
    category = (category or "").strip().strip("/")
    if not category:
        return ""
    refusal = JobError(f"The category {category!r} must be a folder name inside the save path.")
    if os.path.isabs(category) or len(category) > 200:
        raise refusal
    root = os.path.realpath(save_root)
    target = os.path.realpath(os.path.join(root, category))
    if not target.startswith(root + os.sep):
        raise refusal
    return os.path.relpath(target, root)


def category_for_dir(save_root, directory):
    """The category a client's download folder names: an absolute folder must be the save path
    or inside it; a relative one is a category (check_category). Refuse any other."""
    if os.path.isabs(directory or ""):
        root = os.path.realpath(save_root)
        target = os.path.realpath(directory)
        if target != root and not target.startswith(root + os.sep):
            raise JobError(f"The download folder {directory!r} is outside hashdrop's save path "
                           f"{root}: choose the save path or a folder inside it.")
        directory = os.path.relpath(target, root) if target != root else ""
    return check_category(save_root, directory)


def uploaded_targets(uploads, rejected):
    """(target, bytes) for each usable uploaded .torrent file ((filename, bytes) pairs); each
    other one goes to rejected with the reason."""
    targets = []
    for filename, data in uploads:
        try:
            v1, v2, name = torrent_files.describe_torrent(data)
        except ValueError as exc:
            rejected.append(hashes.Rejected(filename, f"is not a usable .torrent file: {exc}"))
            continue
        target = hashes.Target(info_hash=v1 or v2, v1_hash=v1, v2_hash=v2, name=name, source=filename)
        targets.append((target, data))
    return targets


@dataclass
class JobOptions:
    """What one submit asks of each of its new jobs."""

    save_root: str  # the folder the job downloads into: the incomplete folder if set, else the save path
    category: str
    sequential: bool
    paused: bool
    trackers: list
    labels: list
    source: str

    @functools.cached_property
    def save_path(self):
        """The folder every new job of this submit saves in."""
        return os.path.abspath(os.path.join(self.save_root, self.category))

    def new_job(self, target, metainfo=None):
        """A new job for a hashes.Target (and its .torrent file's bytes, if uploaded)."""
        return Job(info_hash=target.info_hash, v1_hash=target.v1_hash, v2_hash=target.v2_hash,
                   name=target.name, magnet=hashes.magnet_for(target, self.trackers), metainfo=metainfo,
                   save_path=self.save_path,
                   category=self.category, sequential=self.sequential, labels=list(self.labels),
                   source=self.source, state=JobState.PAUSED if self.paused else JobState.FETCHING_METADATA)


def prepare_submit(config, parsed, uploads, category, paused, sequential, labels, source):
    """What a submit starts from, in embedded and cluster mode alike: its SubmitResult (refused
    for a category it cannot take), the (target, .torrent bytes or None) pairs, and the options."""
    result = SubmitResult(duplicates=list(parsed.duplicates), rejected=list(parsed.rejected))
    download_root = config["INCOMPLETE_PATH"] or config["SAVE_PATH"]
    try:
        category = check_category(config["SAVE_PATH"], category, download_root)
    except JobError as exc:
        return result.refuse(exc.message), [], None
    targets = [(target, None) for target in parsed.targets] + uploaded_targets(uploads, result.rejected)
    options = JobOptions(download_root, category, sequential, paused, config["TRACKERS"], list(labels), source)
    return result, targets, options
