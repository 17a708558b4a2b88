"""What changed since a token: a version per change, jobs stamped with it, removals remembered.

Pure Python with no lock of its own: jobs.registry holds its maps' lock around every call.
"""
import re
import secrets

REMOVALS_KEPT = 10_000  # removals remembered; a token older than the oldest forgotten one gets everything
TOKEN = re.compile(r"([0-9a-f]{1,32})\.([0-9]{1,18})")


class BadToken(ValueError):
    """A token this server never gives (not `<epoch>.<version>`)."""


class ChangeLog:
    """Versions of what is shown of each key (an info hash), and the keys removed.

    Every change that shows takes the next version and stamps its key with it; the keys are kept
    in the order of their last change, so what changed since a version is read from the newest
    end and costs what changed, not what exists. A token is `<epoch>.<version>`: the epoch is
    random per process, so a token from another run (whose versions mean nothing here) is stale.
    """

    def __init__(self, removals_kept=None, epoch=None):
        self.epoch = epoch or secrets.token_hex(4)
        self.version = 0
        self._stamps = {}  # key -> (version, signature), oldest change first
        self._removals = {}  # removed key -> version, oldest first
        self.removals_kept = removals_kept or REMOVALS_KEPT
        self._forgotten = 0  # the version of the newest removal no longer remembered

    def token(self):
        """The token for everything up to now."""
        return f"{self.epoch}.{self.version}"

    def stamp(self, key, signature=None):
        """Record that what key shows is now signature; a new version if it differs (a new key,
        or None, which never matches: always). Return whether it changed."""
        old = self._stamps.get(key)
        if old is not None and signature is not None and old[1] == signature:
            return False
        self._stamps.pop(key, None)  # to the newest end
        self.version += 1
        self._stamps[key] = (self.version, signature)
        self._removals.pop(key, None)  # back again: no longer removed
        return True

    def version_of(self, key):
        """The version key was last stamped with (0 if never)."""
        stamp = self._stamps.get(key)
        return stamp[0] if stamp else 0

    def remove(self, key):
        """Record that key is gone; the oldest removal is forgotten past removals_kept."""
        if self._stamps.pop(key, None) is None:
            return
        self.version += 1
        self._removals[key] = self.version
        if len(self._removals) > self.removals_kept:
            oldest = next(iter(self._removals))
            self._forgotten = self._removals.pop(oldest)

    def since(self, token):
        """The version a token stands for, or None when the token is empty or stale: from another
        run, from the future, or older than a removal no longer remembered. BadToken if malformed."""
        if not token:  # a first poll: everything
            return None
        match = TOKEN.fullmatch(token)
        if not match:
            raise BadToken(token)
        epoch, version = match.group(1), int(match.group(2))
        if epoch != self.epoch or version > self.version or version < self._forgotten:
            return None
        return version

    def changed_since(self, version):
        """The keys stamped after version, newest change first."""
        changed = []
        for key in reversed(self._stamps):
            if self._stamps[key][0] <= version:
                break
            changed.append(key)
        return changed

    def removed_since(self, version):
        """The keys removed after version (and not back since), newest first."""
        removed = []
        for key in reversed(self._removals):
            if self._removals[key] <= version:
                break
            removed.append(key)
        return removed
