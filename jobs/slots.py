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


def moved_ranks(order, moving, where):
    """New queue ranks for the keys in `moving`: {key: rank}.

    order: (key, rank) pairs of every job, lowest rank (first to download) first. where: "top",
    "bottom", "up", "down" (one place, as Transmission's queue-move-up/down), or a position
    (0 = first). Only the moved keys (and for up and down, the neighbours they swap with) get
    new ranks, so a move writes a row or two per moved job, not the whole queue.
    """
    keys = [key for key, _ in order]
    ranks = dict(order)
    moving = [key for key in keys if key in set(moving)]
    if not moving:
        return {}
    if where in ("up", "down"):
        return stepped(keys, ranks, set(moving), -1 if where == "up" else 1)
    rest = [key for key in keys if key not in set(moving)]
    at = {"top": 0, "bottom": len(rest)}.get(where, where)
    at = max(0, min(int(at), len(rest)))
    before = ranks[rest[at - 1]] if at > 0 else None
    after = ranks[rest[at]] if at < len(rest) else None
    return dict(zip(moving, spaced(before, after, len(moving))))


def stepped(keys, ranks, moving, step):
    """Swap each moving key with its neighbour in the direction of step, unless that one moves too."""
    order = list(keys)
    indices = range(len(order)) if step < 0 else range(len(order) - 1, -1, -1)
    for index in indices:
        other = index + step
        if order[index] in moving and 0 <= other < len(order) and order[other] not in moving:
            order[index], order[other] = order[other], order[index]
    new = dict(zip(order, sorted(ranks[key] for key in keys)))
    return {key: new[key] for key in keys if new[key] != ranks[key]}


def spaced(before, after, count):
    """count ranks in order strictly between before and after (either may be None: no bound)."""
    if before is None and after is None:
        before, after = 0.0, float(count + 1)
    elif before is None:
        before = after - count - 1
    elif after is None:
        after = before + count + 1
    gap = (after - before) / (count + 1)
    return [before + gap * (i + 1) for i in range(count)]
