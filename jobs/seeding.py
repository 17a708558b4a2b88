"""When a completed job stops seeding: its share ratio and idle limits, the way Transmission
counts them, so that Sonarr and Radarr see a job "stopped" when they expect to.

Each limit has a mode: GLOBAL follows the session's value (HASHDROP_SEED_RATIO and
HASHDROP_SEED_IDLE_MINUTES, or what session-set changed them to), OWN uses the job's own value
(torrent-set), UNLIMITED never stops. Pure logic: jobs.lifecycle applies it.
"""
import json
from dataclasses import asdict, dataclass

GLOBAL, OWN, UNLIMITED = 0, 1, 2
MODES = (GLOBAL, OWN, UNLIMITED)


@dataclass
class SeedLimits:
    """One job's limits as torrent-set gives them; the values count only in OWN mode."""

    ratio: float = 2.0  # Transmission's own defaults for a torrent's values
    ratio_mode: int = GLOBAL
    idle_minutes: int = 30
    idle_mode: int = GLOBAL

    def to_text(self):
        # vars(), not dataclasses.asdict: asdict deep-copies, and a submit of 1,000 stores 1,000.
        return json.dumps(vars(self))

    @classmethod
    def from_text(cls, text):
        """The limits a record holds; the defaults for a record made before them or damaged."""
        try:
            stored = json.loads(text or "{}")
            return cls(**{key: stored[key] for key in vars(cls()) if key in stored})
        except (ValueError, TypeError):
            return cls()


@dataclass
class SessionSeedLimits:
    """The global limits: a share ratio and idle minutes, None where there is none."""

    ratio: float | None = None
    idle_minutes: float | None = None


def ratio_limit(limits, session):
    """The share ratio at which the job stops seeding, or None."""
    if limits.ratio_mode == OWN:
        return limits.ratio
    return None if limits.ratio_mode == UNLIMITED else session.ratio


def idle_limit_seconds(limits, session):
    """How long the job may seed with nothing moving before it stops, or None."""
    if limits.idle_mode == OWN:
        return limits.idle_minutes * 60
    if limits.idle_mode == UNLIMITED or session.idle_minutes is None:
        return None
    return session.idle_minutes * 60


def reason_to_stop(limits, session, ratio, idle_seconds):
    """Why a seeding job stops now ("ratio 2.0 reached", "idle for 30 min"), or None."""
    limit = ratio_limit(limits, session)
    if limit is not None and ratio is not None and ratio >= limit:
        return f"ratio {limit:g} reached"
    idle_limit = idle_limit_seconds(limits, session)
    if idle_limit is not None and idle_seconds >= idle_limit:
        return f"idle for {idle_limit / 60:g} min"
    return None


def changed_limits(limits, changes):
    """A copy of limits with torrent-set's changes ({"ratio": 1.5, "idle_mode": 1, ...}) applied;
    raise ValueError with a sentence for a value that cannot be one."""
    values = asdict(limits)
    for key, value in changes.items():
        if key not in values:
            raise ValueError(f"{key} is not a seeding limit.")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, not {value!r}.")
        if key.endswith("_mode") and value not in MODES:
            raise ValueError(f"{key} must be 0 (global), 1 (this torrent's) or 2 (unlimited), not {value!r}.")
        if value < 0:
            raise ValueError(f"{key} must not be negative.")
        values[key] = float(value) if key == "ratio" else int(value)
    return SeedLimits(**values)
