"""The download slots: at most a set number of jobs download at once, the rest queue."""


class SlotQueue:
    """Who holds one of `size` download slots, and who gets a slot that frees.

    Pure bookkeeping, by info hash: the caller says which jobs wait, in the order they were
    added, so a queued job moves up when one ahead of it finishes, pauses or is removed.
    """

    def __init__(self, size):
        self.size = size
        self._holders = set()

    def __contains__(self, key):
        return key in self._holders

    def __len__(self):
        return len(self._holders)

    def take(self, key):
        """Give key a slot if it has none and one is free; return whether it holds one."""
        if key in self._holders:
            return True
        if len(self._holders) >= self.size:
            return False
        self._holders.add(key)
        return True

    def release(self, key, waiting=()):
        """Free key's slot; return the first of waiting (keys, oldest first) to start now, or None."""
        if key not in self._holders:
            return None
        self._holders.discard(key)
        return next(iter(waiting), None)
