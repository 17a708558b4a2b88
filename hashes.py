"""Parse what people paste into download targets: info hashes and magnet links.

A paste is read line by line. A line yields every magnet link and every standalone info hash in
it, in order; a line that yields nothing is rejected with a reason a person can act on.

Standalone means delimited by the ends of the line or by a character that is not an ASCII letter
or digit. Every other character is a delimiter, including accented and other non-ASCII letters
(so ``é<hash>`` counts) and full-width digits, which never count as hex either: only the ASCII
classes ``[0-9a-fA-F]`` and ``[A-Za-z2-7]`` are used, never ``\\d`` or ``str.isalnum``.

A 32-character base32 hash is read only when it is the only ASCII letter/digit run on its line
(quotes, bullets or a trailing comma around it are fine), since a 32-letter run inside ordinary
text is more likely a word than a hash. Inside a magnet link it is always read.

A magnet link runs from ``magnet:?`` to whitespace, a quote or ``<``/``>``, less the full stop,
comma or unbalanced ``)`` of the sentence around it; ``&amp;`` counts as ``&``. Its hashes are not
read again as bare hashes. A magnet link naming no usable hash is rejected on its own, even on a
line where other things were found, because it is something the person meant to start; other
leftovers on such a line (a short hex run, stray words) are ignored.

Every pattern here is a single pass with bounded lookaround, so a line of any length is parsed in
linear time, and parsing never raises, whatever the text.
"""
import base64
import functools
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, unquote_plus

DISPLAY_LIMIT = 80

# A 64-hex run is tried before a 40-hex one, and either must be a whole run of ASCII letters
# and digits: the lookarounds reject the first 40 characters of a 64-hex string, x<hash>, <hash>9.
STANDALONE_HASH = re.compile(r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40})(?![0-9A-Za-z])")
BARE_HASH = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")  # a line that is one hash and nothing else
# A magnet runs to whitespace, a quote or an angle bracket; magnet%3A%3F... is one that was
# url-encoded into another link (a site's redirect), and it ends where that link's query goes on.
MAGNET = re.compile(r"magnet:\?[^\s\"'`<>]*|magnet%3A%3F[^\s\"'`<>&]*", re.IGNORECASE)
# Linkifiers' rule: a sentence's full stop or comma after a link is not part of it.
TRAILING_PUNCTUATION = ".,;!?"
CLOSERS = {")": "(", "]": "[", "}": "{"}
ONLY_TOKEN = re.compile(r"[^0-9A-Za-z]*([0-9A-Za-z]+)[^0-9A-Za-z]*")
ALNUM = re.compile(r"[0-9A-Za-z]")
HEX_RUN = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{20,}")
BASE32_RUN = re.compile(r"(?<![0-9A-Za-z])[A-Za-z2-7]{32}(?![0-9A-Za-z])")
HEX = re.compile(r"[0-9a-fA-F]+")
BASE32 = re.compile(r"[A-Za-z2-7]+")
LEADING_ALNUM = re.compile(r"[0-9A-Za-z]*")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
NOT_A_MAGNET_START = re.compile(r"magnet:(?!\?)", re.IGNORECASE)

LENGTHS = "a v1 info hash has 40 (or 32 in base32), a v2 hash 64"


@dataclass(frozen=True)
class Target:
    """One torrent to download, as found in a paste."""

    info_hash: str                     # the job's key: the v1 hash, else the v2 hash
    v1_hash: str | None = None         # 40 lowercase hex
    v2_hash: str | None = None         # 64 lowercase hex
    magnet: str | None = None          # normalised magnet link, when the input was a magnet
    name: str | None = None            # dn= from a magnet
    trackers: tuple[str, ...] = ()     # tr=
    peers: tuple[str, ...] = ()        # x.pe= (host:port)
    web_seeds: tuple[str, ...] = ()    # ws=
    source: str = ""                   # the line it was found in, shortened for display


@dataclass(frozen=True)
class Rejected:
    """A line (or a magnet link in it) that names no torrent, and why."""

    text: str
    reason: str


@dataclass
class ParseResult:
    """Targets in order of first appearance, later repeats of them, and rejected lines."""

    targets: list[Target] = field(default_factory=list)
    duplicates: list[Target] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def shorten(text: str, limit: int = DISPLAY_LIMIT) -> str:
    """The text cut to limit characters, with an ellipsis when something was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def normalize_info_hash(text) -> str | None:
    """Return 40 hex / 32 base32 / 64 hex (any case) as lowercase hex, anything else as None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if len(text) in (40, 64) and HEX.fullmatch(text):
        return text.lower()
    if len(text) == 32 and BASE32.fullmatch(text):
        return base64.b32decode(text.upper()).hex()
    return None


def parse_text(text: str) -> ParseResult:
    """Parse a paste line by line (LF, CRLF and lone CR all end a line)."""
    return parse_items((text or "").splitlines())


def parse_items(items: list[str]) -> ParseResult:
    """Parse a list of pasted items, each one treated like one line."""
    if isinstance(items, str):
        items = [items]
    result = ParseResult()
    seen = set()
    for item in items:
        if not isinstance(item, str):
            result.rejected.append(Rejected(shorten(repr(item)), "is not text"))
            continue
        # Lone surrogates cannot be encoded; replace them so no later step (JSON, SQLite) fails.
        line = item.encode("utf-8", "replace").decode("utf-8").strip()
        if not line:
            continue
        found = find_in_line(line)
        if not found:
            result.rejected.append(Rejected(shorten(line), why_not(line)))
        for target in found:
            if isinstance(target, Rejected):
                result.rejected.append(target)
                continue
            keys = {key for key in (target.v1_hash, target.v2_hash) if key}
            if keys & seen:
                result.duplicates.append(target)
            else:
                result.targets.append(target)
            # A duplicate hybrid links its other hash to the same torrent, so that one repeats too.
            seen |= keys
    return result


def find_in_line(line):
    """Every magnet link (a Target or a Rejected) and standalone hash in one line, in order."""
    if BARE_HASH.fullmatch(line):  # the usual paste: parsed in a third of the time
        return [hash_target(line.lower(), shorten(line))]
    source = shorten(line)
    found = []
    spans = []
    for match in MAGNET.finditer(line):
        link = trim_link(match.group())
        spans.append((match.start(), match.start() + len(link)))
        found.append((match.start(), parse_magnet(link, source)))
    magnet_index = 0
    for match in STANDALONE_HASH.finditer(line):
        start = match.start()
        while magnet_index < len(spans) and spans[magnet_index][1] <= start:
            magnet_index += 1
        if magnet_index < len(spans) and spans[magnet_index][0] <= start:
            continue  # part of a magnet link, already reported with it
        value = match.group().lower()
        found.append((start, hash_target(value, source)))
    if not found:
        only = ONLY_TOKEN.fullmatch(line)
        if only and len(only.group(1)) == 32 and BASE32.fullmatch(only.group(1)):
            found.append((0, hash_target(normalize_info_hash(only.group(1)), source)))
    found.sort(key=lambda pair: pair[0])
    return [item for _, item in found]


def hash_target(value, source):
    """A Target for one bare hash in lowercase hex."""
    if len(value) == 40:
        return Target(info_hash=value, v1_hash=value, source=source)
    return Target(info_hash=value, v2_hash=value, source=source)


def trim_link(link):
    """Drop trailing punctuation and unbalanced closing brackets that belong to the text around."""
    prefix = len("magnet:?") if link[6] == ":" else len("magnet%3A%3F")
    opened = {opener: link.count(opener) for opener in CLOSERS.values()}
    closed = {closer: link.count(closer) for closer in CLOSERS}
    end = len(link)
    # Text around a link ends it with a few marks at most; the cap keeps ")))..." lines linear.
    while end > max(prefix, len(link) - 8):
        last = link[end - 1]
        if last in CLOSERS:
            if opened[CLOSERS[last]] >= closed[last]:
                break  # balanced, as in dn=Film+(2010)
            closed[last] -= 1
        elif last not in TRAILING_PUNCTUATION:
            break
        end -= 1
    return link[:end]


def parse_magnet(link, source):
    """A Target for a magnet link, or a Rejected saying what is wrong with it."""
    shown = shorten(link)
    if link[:7].lower() != "magnet:":
        link = unquote(link)  # magnet%3A%3F...: one that was url-encoded inside another link
    params = magnet_params(link.replace("&amp;", "&"))
    xts = [value for key, value in params if key == "xt" and value.strip()]
    v1 = v2 = None
    problems = []
    for xt in xts:
        hash_value, problem = read_xt(xt)
        if problem:
            problems.append(problem)
        elif len(hash_value) == 40:
            v1 = v1 or hash_value
        else:
            v2 = v2 or hash_value
    if not (v1 or v2):
        if not xts:
            reason = "is a magnet link without an xt= hash, so it names no torrent"
        else:
            reason = problems[0]
        return Rejected(shown, reason)

    names = values(params, "dn")
    target = Target(
        info_hash=v1 or v2,
        v1_hash=v1,
        v2_hash=v2,
        name=names[0] if names else None,
        trackers=values(params, "tr"),
        peers=values(params, "x.pe"),
        web_seeds=values(params, "ws"),
        source=source,
    )
    return Target(**{**target.__dict__, "magnet": magnet_for(target)})


def magnet_params(link):
    """The (key, raw value) pairs of a magnet link; xt.1= and tr.1= count as xt= and tr=."""
    query = link.partition("?")[2].partition("#")[0]
    params = []
    for part in query.split("&"):
        key, _, value = part.partition("=")
        key = key.strip().lower()
        base, dot, number = key.partition(".")
        if base in ("xt", "tr") and dot and number.isdigit():
            key = base
        params.append((key, value))
    return params


def values(params, key):
    """The decoded, non-empty, distinct values of one magnet parameter, in order."""
    if key == "dn":
        # A name is for display: "+" means a space, as in form encoding, and control characters go.
        decoded = (CONTROL.sub("", unquote_plus(value)) for k, value in params if k == key)
    else:
        decoded = (unquote(value) for k, value in params if k == key)
    return tuple(dict.fromkeys(value.strip() for value in decoded if value.strip()))


def read_xt(xt):
    """(lowercase hex hash, None) for a usable xt= value, else (None, the reason it is not)."""
    value = unquote(xt).strip()
    lowered = value.lower()
    if lowered.startswith("urn:btih:"):
        # Only the run of letters and digits counts, so a link pasted with ")" or "]name[/url]"
        # stuck to its end still gives its hash.
        candidate = LEADING_ALNUM.match(value, 9).group()
        hash_value = normalize_info_hash(candidate)
        if hash_value and len(hash_value) == 40:
            return hash_value, None
        if not candidate:
            return None, "is a magnet link whose urn:btih: hash is missing"
        if len(candidate) == 32:
            return None, ("is a magnet link whose urn:btih: hash has 32 characters but is not "
                          "base32, which uses only the letters A-Z and the digits 2-7")
        return None, (f"is a magnet link whose urn:btih: hash has {len(candidate)} characters; "
                      "it needs 40 hex or 32 base32")
    if lowered.startswith("urn:btmh:"):
        candidate = LEADING_ALNUM.match(value, 9).group()
        if candidate[:4] == "1220" and len(candidate) == 68 and HEX.fullmatch(candidate):
            return candidate[4:].lower(), None
        return None, ("is a magnet link whose urn:btmh: hash is not 1220 followed by 64 hex "
                      "characters (a v2 SHA-256 info hash)")
    scheme = ":".join(value.split(":", 2)[:2]) if value.lower().startswith("urn:") else value
    return None, (f"is a magnet link for {shorten(scheme, 24)!r}, not a BitTorrent info hash "
                  "(xt=urn:btih: or xt=urn:btmh:)")


def why_not(line):
    """The reason a line with nothing usable in it is skipped, fitted to what it looks like."""
    if NOT_A_MAGNET_START.search(line):
        return "looks like a magnet link but does not start with magnet:?"
    if BASE32_RUN.search(line):
        return ("has a 32-character base32 code amid other text; a base32 info hash is read "
                "only on a line of its own")
    only = ONLY_TOKEN.fullmatch(line)
    token = only.group(1) if only else ""
    if len(token) == 32 and not HEX.fullmatch(token):
        return ("is 32 characters but not base32, which uses only the letters A-Z and the "
                "digits 2-7")
    longest = max(HEX_RUN.finditer(line), key=lambda match: len(match.group()), default=None)
    if longest:
        length = len(longest.group())
        before = line[longest.start() - 1: longest.start()]
        after = line[longest.end(): longest.end() + 1]
        joined = ALNUM.fullmatch(before) or ALNUM.fullmatch(after)
        if joined and length in (40, 64):
            return (f"has {length} hex characters run together with other letters or digits; "
                    "an info hash must stand apart from them")
        if longest.group() == line:
            return f"is {length} hex characters; {LENGTHS}"
        return f"has a run of {length} hex characters; {LENGTHS}"
    if 24 <= len(token) <= 40 and BASE32.fullmatch(token) and re.search(r"[2-7]", token) \
            and re.search(r"[A-Za-z]", token):
        return (f"is {len(token)} base32 characters; a base32 info hash has 32 "
                "(a hex one 40, a v2 hash 64)")
    return "no info hash or magnet link found"


def magnet_for(target, trackers=()) -> str:
    """Build a magnet link for a Target or a bare hash, with the given trackers appended."""
    if isinstance(target, str):
        value = normalize_info_hash(target)
        if value is None:
            raise ValueError(f"not an info hash: {shorten(target)!r}")
        target = hash_target(value, "")
    if isinstance(trackers, str):
        trackers = [trackers]
    v1, v2 = target.v1_hash, target.v2_hash
    if not (v1 or v2):  # a Target built with only its info_hash
        v1 = target.info_hash if len(target.info_hash) == 40 else None
        v2 = None if v1 else target.info_hash
    params = []
    if v1:
        params.append(f"xt=urn:btih:{v1}")
    if v2:
        params.append(f"xt=urn:btmh:1220{v2}")
    if target.name:
        params.append("dn=" + encode(target.name))
    for tracker in dict.fromkeys(t.strip() for t in (*target.trackers, *trackers)):
        if tracker:
            params.append("tr=" + encode(tracker))
    # libtorrent reads x.pe without percent-decoding it, so host:port and [v6] stay as they are.
    params += ["x.pe=" + encode(peer, safe=":[]") for peer in target.peers]
    params += ["ws=" + encode(seed) for seed in target.web_seeds]
    link = "magnet:?" + "&".join(params)
    # quote() leaves "." (and x.pe its brackets) as they are; encode a last one that would be
    # taken for the sentence's full stop or closing bracket when the link is read back.
    if link[-1] not in CLOSERS and link[-1] not in TRAILING_PUNCTUATION:
        return link
    return link if trim_link(link) == link else link[:-1] + f"%{ord(link[-1]):02X}"


@functools.lru_cache(maxsize=1024)
def encode(value, safe=""):
    """Percent-encode one magnet parameter value (cached: every job repeats the trackers)."""
    return quote(value, safe=safe, errors="replace")
