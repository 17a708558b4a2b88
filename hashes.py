"""Parse what people paste into download targets: info hashes and magnet links."""
import base64
import binascii
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode

HEX40 = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{40}(?![0-9A-Za-z])")
HEX64 = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{64}(?![0-9A-Za-z])")
HEX_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{20,}(?![0-9A-Za-z])")
BASE32 = re.compile(r"[A-Za-z2-7]{32}")
MAGNET = re.compile(r"magnet:\?[^\s\"'<>]*", re.IGNORECASE)
STANDALONE = re.compile(r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40})(?![0-9A-Za-z])")


@dataclass(frozen=True)
class Target:
    info_hash: str
    v1_hash: str | None = None
    v2_hash: str | None = None
    magnet: str | None = None
    name: str | None = None
    trackers: tuple = ()
    peers: tuple = ()
    web_seeds: tuple = ()
    source: str = ""


@dataclass(frozen=True)
class Rejected:
    text: str
    reason: str


@dataclass
class ParseResult:
    targets: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    rejected: list = field(default_factory=list)


def shorten(text, limit=80):
    return text if len(text) <= limit else text[: limit - 1] + "…"


def normalize_info_hash(text):
    """40 hex / 32 base32 / 64 hex, any case -> lowercase hex; anything else -> None."""
    text = (text or "").strip()
    if re.fullmatch(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}", text):
        return text.lower()
    if BASE32.fullmatch(text):
        try:
            return binascii.hexlify(base64.b32decode(text.upper())).decode()
        except (binascii.Error, ValueError):
            return None
    return None


def parse_magnet(link, source):
    """A Target for a magnet link, or a Rejected saying what is wrong with it."""
    link = link.replace("&amp;", "&")
    params = parse_qsl(link.partition("?")[2], keep_blank_values=True)
    v1 = v2 = None
    for key, value in params:
        if key.lower() != "xt":
            continue
        value = value.strip()
        if value.lower().startswith("urn:btih:"):
            v1 = normalize_info_hash(value[9:])
        elif value.lower().startswith("urn:btmh:1220") and re.fullmatch(r"[0-9a-fA-F]{64}", value[13:]):
            v2 = value[13:].lower()
    if not (v1 or v2):
        return Rejected(shorten(source), "is a magnet link without a valid xt=urn:btih: or urn:btmh: hash")
    values = lambda name: tuple(v for k, v in params if k.lower() == name and v)  # noqa: E731
    names = values("dn")
    target = Target(info_hash=v1 or v2, v1_hash=v1, v2_hash=v2, name=names[0] if names else None,
                    trackers=values("tr"), peers=values("x.pe"), web_seeds=values("ws"),
                    source=shorten(source))
    return Target(**{**target.__dict__, "magnet": magnet_for(target)})


def find_in_line(line):
    """Every magnet link and standalone hash in one line, in order, and what was wrong."""
    found = []
    rest = []
    last = 0
    for match in MAGNET.finditer(line):
        found.append((match.start(), parse_magnet(match.group(), line)))
        rest.append(line[last:match.start()])
        last = match.end()
    rest.append(line[last:])
    offset_text = " ".join(rest)
    for match in STANDALONE.finditer(offset_text):
        value = match.group().lower()
        if len(value) == 40:
            target = Target(info_hash=value, v1_hash=value, source=shorten(line))
        else:
            target = Target(info_hash=value, v2_hash=value, source=shorten(line))
        found.append((len(line) + match.start(), target))
    if not found and BASE32.fullmatch(line):
        value = normalize_info_hash(line)
        if value:
            found.append((0, Target(info_hash=value, v1_hash=value, source=shorten(line))))
    found.sort(key=lambda item: item[0])
    return [item for _, item in found]


def why_not(line):
    """The reason a line with nothing usable in it is skipped."""
    run = HEX_RUN.search(line)
    if run:
        return (f"is {len(run.group())} hex characters; a v1 info hash has 40 "
                "(or 32 in base32), a v2 hash 64")
    if line.lower().startswith("magnet:"):
        return "is not a complete magnet link (it must start with magnet:?)"
    return "no info hash or magnet link found"


def parse_text(text):
    """Parse a paste line by line."""
    return parse_items((text or "").splitlines())


def parse_items(items):
    """Parse a list of pasted items, each treated like one line."""
    result = ParseResult()
    seen = set()
    for raw in items:
        line = raw.strip()
        if not line:
            continue
        found = find_in_line(line)
        if not found:
            result.rejected.append(Rejected(shorten(line), why_not(line)))
            continue
        for item in found:
            if isinstance(item, Rejected):
                result.rejected.append(item)
                continue
            keys = {k for k in (item.v1_hash, item.v2_hash) if k}
            if keys & seen:
                result.duplicates.append(item)
            else:
                seen |= keys
                result.targets.append(item)
    return result


def magnet_for(target, trackers=()):
    """A magnet link for a target or bare hash, with the given trackers appended."""
    if isinstance(target, str):
        value = normalize_info_hash(target)
        target = Target(info_hash=value, v1_hash=value if len(value) == 40 else None,
                        v2_hash=value if len(value) == 64 else None)
    params = []
    if target.v1_hash:
        params.append(("xt", f"urn:btih:{target.v1_hash}"))
    if target.v2_hash:
        params.append(("xt", f"urn:btmh:1220{target.v2_hash}"))
    if target.name:
        params.append(("dn", target.name))
    for tracker in dict.fromkeys((*target.trackers, *trackers)):
        params.append(("tr", tracker))
    params += [("x.pe", peer) for peer in target.peers]
    params += [("ws", seed) for seed in target.web_seeds]
    return "magnet:?" + urlencode(params, quote_via=quote, safe=":")
