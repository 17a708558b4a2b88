"""Parsing pastes into info hashes and magnet links: accepted forms, reasons, properties."""
import base64
import re
import time
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hashes
from hashes import (
    ParseResult,
    Rejected,
    Target,
    magnet_for,
    normalize_info_hash,
    parse_items,
    parse_text,
    shorten,
)

V1 = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
V1_B = "d2474e86c95b19b8bcfdb92bc12c9d44667cfa36"
V2 = "caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e"
V1_BASE32 = base64.b32encode(bytes.fromhex(V1)).decode()
LENGTHS = "a v1 info hash has 40 (or 32 in base32), a v2 hash 64"
FULLWIDTH_ZERO = "\uff10"


def found(result):
    """The info hashes of every target and duplicate, targets first."""
    return [t.info_hash for t in result.targets] + [t.info_hash for t in result.duplicates]


# Accepted forms -----------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (V1, V1),
    (V1.upper(), V1),
    (V1[:20].upper() + V1[20:], V1),
    (V2, V2),
    (V2.upper(), V2),
    (V1_BASE32, V1),
    (V1_BASE32.lower(), V1),
    (f"  {V1}\t", V1),
    (V1[:39], None),
    (V1 + "a", None),
    (V2[:63], None),
    (V1[:39] + FULLWIDTH_ZERO, None),
    (V1_BASE32[:31], None),
    ("0" + V1_BASE32[1:], None),  # 0 is not in the base32 alphabet
    ("", None),
    (None, None),
    (42, None),
])
def test_normalize_info_hash(text, expected):
    assert normalize_info_hash(text) == expected


@pytest.mark.parametrize("line", [
    V1,
    V1.upper(),
    f"https://example.org/torrent?hash={V1}&page=2",
    f"https://example.org/t/{V1}/files",
    f'"{V1}",1.4 GiB,"Some Film"',
    f"({V1})",
    f"[{V1}]",
    f"hash:{V1}.",
    f"é{V1}é",            # non-ASCII letters are delimiters
    f"{FULLWIDTH_ZERO}{V1}",
    f"\x00{V1}\x00",
    f"<td>{V1}</td>",
    f"12:01 <alice> try {V1} please",
    f"{V1}_v1",
    V1_BASE32,
    V1_BASE32.lower(),
    f'"{V1_BASE32}",',      # the only letter/digit run on its line
    f"- {V1_BASE32}",
])
def test_bare_v1_forms(line):
    result = parse_text(line)
    assert found(result) == [V1]
    assert result.rejected == []
    target = result.targets[0]
    assert (target.v1_hash, target.v2_hash, target.magnet, target.source) == (V1, None, None, line)


def test_v2_hash():
    (target,) = parse_text(f"sha: {V2.upper()};").targets
    assert (target.info_hash, target.v1_hash, target.v2_hash) == (V2, None, V2)


@pytest.mark.parametrize("line", [
    V2,                      # its first 40 characters are not a v1 hash
    f"x{V1}",
    f"{V1}9",
    f"{V1}g",
    f"0x{V1}",
])
def test_hex_inside_a_longer_run_is_not_a_v1_hash(line):
    assert V1 not in found(parse_text(line))
    assert V2[:40] not in found(parse_text(line))


def test_fullwidth_digits_are_not_hex():
    fullwidth = V1.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    result = parse_text(fullwidth)
    assert result.targets == []
    assert len(result.rejected) == 1


def test_base32_counts_only_on_a_line_of_its_own():
    result = parse_text(f"the code {V1_BASE32} is not read here")
    assert result.targets == []
    assert "line of its own" in result.rejected[0].reason


def test_a_line_yields_everything_in_order():
    line = f"{V1} then magnet:?xt=urn:btih:{V1_B}&dn=b then {V2}"
    assert found(parse_text(line)) == [V1, V1_B, V2]


def test_every_line_is_read():
    text = f"{V1}\n\n   \n{V1_B}\r\n{V2}\rmagnet:?xt=urn:btih:{V1_BASE32}\r\n"
    result = parse_text(text)
    assert [t.info_hash for t in result.targets] == [V1, V1_B, V2]
    assert [t.info_hash for t in result.duplicates] == [V1]
    assert result.rejected == []


@pytest.mark.parametrize("text", ["", "   ", "\n\r\n\r", "\t\n  \n", None])
def test_blank_pastes_give_nothing(text):
    assert parse_text(text) == ParseResult()


# Magnet links -------------------------------------------------------------------------------
def magnet(*params):
    return "magnet:?" + "&".join(params)


@pytest.mark.parametrize("link, v1, v2", [
    (magnet(f"xt=urn:btih:{V1}"), V1, None),
    (magnet(f"xt=urn:btih:{V1.upper()}"), V1, None),
    (magnet(f"xt=urn:btih:{V1_BASE32}"), V1, None),
    (magnet(f"xt=urn:btih:{V1_BASE32.lower()}"), V1, None),
    (magnet(f"xt=urn:btmh:1220{V2}"), None, V2),
    (magnet(f"xt=urn:btih:{V1}", f"xt=urn:btmh:1220{V2}"), V1, V2),
    (magnet(f"xt=urn:btmh:1220{V2}", f"xt=urn:btih:{V1}"), V1, V2),
    (magnet(f"xt.1=urn:btih:{V1}", f"xt.2=urn:btmh:1220{V2}"), V1, V2),
    (magnet("dn=x", f"xt=urn:btih:{V1}"), V1, None),
    (magnet(f"xt=urn%3Abtih%3A{V1}"), V1, None),
    (f"MAGNET:?XT=URN:BTIH:{V1.upper()}", V1, None),
    (magnet("xt=urn:ed2k:31d6cfe0d16ae931b73c59d7e0c089c0", f"xt=urn:btih:{V1}"), V1, None),
])
def test_magnet_hashes(link, v1, v2):
    result = parse_text(link)
    (target,) = result.targets
    assert (target.info_hash, target.v1_hash, target.v2_hash) == (v1 or v2, v1, v2)
    assert result.duplicates == [] and result.rejected == []


def test_magnet_parameters_are_kept_and_decoded():
    link = magnet(
        f"xt=urn:btih:{V1}",
        "dn=Some+Film+%282010%29",
        "tr=http%3A%2F%2Ftracker.example%2Fannounce",
        "tr.1=udp://other.example:6969/announce",
        "tr=http%3A%2F%2Ftracker.example%2Fannounce",
        "x.pe=10.0.0.2:6881",
        "x.pe=%5B%3A%3A1%5D%3A6882",
        "ws=https%3A%2F%2Fseed.example%2Ffilm.mkv",
        "xl=123456",
        "so=0",
    )
    (target,) = parse_text(link).targets
    assert target.name == "Some Film (2010)"
    assert target.trackers == ("http://tracker.example/announce",
                               "udp://other.example:6969/announce")
    assert target.peers == ("10.0.0.2:6881", "[::1]:6882")
    assert target.web_seeds == ("https://seed.example/film.mkv",)
    assert target.source == link[:79] + "…"
    assert target.magnet == magnet(
        f"xt=urn:btih:{V1}",
        "dn=Some%20Film%20%282010%29",
        "tr=http%3A%2F%2Ftracker.example%2Fannounce",
        "tr=udp%3A%2F%2Fother.example%3A6969%2Fannounce",
        "x.pe=10.0.0.2:6881",
        "x.pe=[::1]:6882",
        "ws=https%3A%2F%2Fseed.example%2Ffilm.mkv",
    )


def test_hybrid_magnet_keeps_both_hashes():
    (target,) = parse_text(magnet(f"xt=urn:btih:{V1}", f"xt=urn:btmh:1220{V2}")).targets
    assert target.magnet == magnet(f"xt=urn:btih:{V1}", f"xt=urn:btmh:1220{V2}")


def test_html_amp_is_an_ampersand():
    line = (f'<a href="magnet:?xt=urn:btih:{V1}&amp;dn=Film&amp;'
            'tr=udp%3A%2F%2Ft.example%3A1">Film</a>')
    (target,) = parse_text(line).targets
    assert (target.info_hash, target.name, target.trackers) == (V1, "Film", ("udp://t.example:1",))


@pytest.mark.parametrize("line, name", [
    (f"see [Film](magnet:?xt=urn:btih:{V1}&dn=Film).", "Film"),
    (f"get it: magnet:?xt=urn:btih:{V1}&dn=Film+(2010), it's good", "Film (2010)"),
    (f"'magnet:?xt=urn:btih:{V1}&dn=Film'", "Film"),
    (f"<magnet:?xt=urn:btih:{V1}&dn=Film>", "Film"),
    (f"`magnet:?xt=urn:btih:{V1}&dn=Film`", "Film"),
    (f"[url=magnet:?xt=urn:btih:{V1}]Film[/url]", None),
    (f"/go?to=magnet%3A%3Fxt%3Durn%3Abtih%3A{V1}%26dn%3DFilm&ref=1", "Film"),
])
def test_magnets_in_surrounding_text(line, name):
    (target,) = parse_text(line).targets
    assert (target.info_hash, target.name) == (V1, name)


def test_hashes_in_a_magnet_are_not_counted_again():
    result = parse_text(magnet(f"xt=urn:btih:{V1}", f"xt=urn:btmh:1220{V2}", f"dn={V1_B}"))
    assert found(result) == [V1]


def test_control_characters_leave_names():
    (target,) = parse_text(magnet(f"xt=urn:btih:{V1}", "dn=%00Film%0A%1B")).targets
    assert target.name == "Film"


# Rejections ---------------------------------------------------------------------------------
@pytest.mark.parametrize("line, reason", [
    ("hello world", "no info hash or magnet link found"),
    ("\x00\x00", "no info hash or magnet link found"),
    ("１２３", "no info hash or magnet link found"),
    (V1[:39], f"is 39 hex characters; {LENGTHS}"),
    (V1 + "a", f"is 41 hex characters; {LENGTHS}"),
    (V2[:63], f"is 63 hex characters; {LENGTHS}"),
    (V2 + V2, f"is 128 hex characters; {LENGTHS}"),
    ("d41d8cd98f00b204e9800998ecf8427e", f"is 32 hex characters; {LENGTHS}"),
    (f"hash: {V1[:39]}", f"has a run of 39 hex characters; {LENGTHS}"),
    (f"x{V1}", "has 40 hex characters run together with other letters or digits; "
               "an info hash must stand apart from them"),
    (f"{V2}z", "has 64 hex characters run together with other letters or digits; "
               "an info hash must stand apart from them"),
    (V1_BASE32[:31], "is 31 base32 characters; a base32 info hash has 32 (a hex one 40, "
                     "a v2 hash 64)"),
    (V1_BASE32 + "A", "is 33 base32 characters; a base32 info hash has 32 (a hex one 40, "
                      "a v2 hash 64)"),
    ("0" + V1_BASE32[1:], "is 32 characters but not base32, which uses only the letters A-Z and "
                          "the digits 2-7"),
    (f"code {V1_BASE32} here", "has a 32-character base32 code amid other text; a base32 info "
                               "hash is read only on a line of its own"),
    ("magnet:xt=urn:btih:abc", "looks like a magnet link but does not start with magnet:?"),
    ("magnet:?", "is a magnet link without an xt= hash, so it names no torrent"),
    ("magnet:?dn=Film&tr=udp://t.example:1", "is a magnet link without an xt= hash, so it names "
                                              "no torrent"),
    ("magnet:?xt=&dn=Film", "is a magnet link without an xt= hash, so it names no torrent"),
    (f"magnet:?xt=urn:btih:{V1[:39]}", "is a magnet link whose urn:btih: hash has 39 characters; "
                                       "it needs 40 hex or 32 base32"),
    (f"magnet:?xt=urn:btih:{V2}", "is a magnet link whose urn:btih: hash has 64 characters; "
                                  "it needs 40 hex or 32 base32"),
    ("magnet:?xt=urn:btih:", "is a magnet link whose urn:btih: hash is missing"),
    ("magnet:?xt=urn:btih:0" + V1_BASE32[1:], "is a magnet link whose urn:btih: hash has 32 "
     "characters but is not base32, which uses only the letters A-Z and the digits 2-7"),
    (f"magnet:?xt=urn:btmh:{V2}", "is a magnet link whose urn:btmh: hash is not 1220 followed by "
                                  "64 hex characters (a v2 SHA-256 info hash)"),
    (f"magnet:?xt=urn:btmh:1220{V2[:63]}", "is a magnet link whose urn:btmh: hash is not 1220 "
     "followed by 64 hex characters (a v2 SHA-256 info hash)"),
    ("magnet:?xt=urn:ed2k:31d6cfe0d16ae931b73c59d7e0c089c0", "is a magnet link for 'urn:ed2k', "
     "not a BitTorrent info hash (xt=urn:btih: or xt=urn:btmh:)"),
])
def test_rejection_reasons(line, reason):
    result = parse_text(line)
    assert result.targets == [] and result.duplicates == []
    assert result.rejected == [Rejected(shorten(line), reason)]


def test_shorten():
    assert shorten("a" * 80) == "a" * 80
    assert shorten("a" * 81) == "a" * 79 + "…"


def test_rejected_text_is_shortened_for_display():
    line = "no hash here " * 20
    (rejected,) = parse_text(line).rejected
    assert len(rejected.text) == 80
    assert rejected.text == line.strip()[:79] + "…"


def test_found_items_outweigh_garbage_on_the_same_line():
    result = parse_text(f"garbage {V1[:39]} and {V1} and {V1_BASE32[:31]}")
    assert found(result) == [V1]
    assert result.rejected == []


def test_a_broken_magnet_is_named_even_beside_a_good_hash():
    result = parse_text(f"{V1} magnet:?xt=urn:btih:abc")
    assert found(result) == [V1]
    assert result.rejected == [Rejected("magnet:?xt=urn:btih:abc",
                                        "is a magnet link whose urn:btih: hash has 3 characters; "
                                        "it needs 40 hex or 32 base32")]


def test_good_and_bad_lines_each_count():
    result = parse_text(f"{V1}\nnope\n{V1_B}\n{V1[:39]}\n")
    assert found(result) == [V1, V1_B]
    assert [r.text for r in result.rejected] == ["nope", V1[:39]]


# Duplicates ---------------------------------------------------------------------------------
@pytest.mark.parametrize("first, second", [
    (V1, V1),
    (V1, V1.upper()),
    (V1, V1_BASE32),
    (V1, magnet(f"xt=urn:btih:{V1}", "dn=Film")),
    (V1, magnet(f"xt=urn:btih:{V1}", f"xt=urn:btmh:1220{V2}")),
    (magnet(f"xt=urn:btih:{V1}", f"xt=urn:btmh:1220{V2}"), V1),
    (magnet(f"xt=urn:btih:{V1}", f"xt=urn:btmh:1220{V2}"), V2),
    (V2, magnet(f"xt=urn:btih:{V1}", f"xt=urn:btmh:1220{V2}")),
    (f"{V1} {V1}", ""),
])
def test_duplicates(first, second):
    result = parse_text(f"{first}\n{second}")
    assert len(result.targets) == 1
    assert len(result.duplicates) == 1
    assert result.duplicates[0].source == shorten(second or first)


def test_a_hybrid_links_its_two_hashes():
    hybrid = magnet(f"xt=urn:btih:{V1}", f"xt=urn:btmh:1220{V2}")
    result = parse_text(f"{V1}\n{hybrid}\n{V2}\n{V1_B}")
    assert [t.info_hash for t in result.targets] == [V1, V1_B]
    assert [t.info_hash for t in result.duplicates] == [V1, V2]


# parse_items --------------------------------------------------------------------------------
def test_parse_items_treats_each_item_as_a_line():
    result = parse_items([V1, "  ", f" {V1_B} and {V2} ", V1, "nope", V1_BASE32])
    assert [t.info_hash for t in result.targets] == [V1, V1_B, V2]
    assert [t.info_hash for t in result.duplicates] == [V1, V1]
    assert result.rejected == [Rejected("nope", "no info hash or magnet link found")]


def test_parse_items_takes_a_lone_string_as_one_item():
    assert found(parse_items(V1)) == [V1]


def test_parse_items_rejects_what_is_not_text():
    result = parse_items([V1, None, 7])
    assert found(result) == [V1]
    assert [r.reason for r in result.rejected] == ["is not text", "is not text"]


# magnet_for ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    (V1, f"magnet:?xt=urn:btih:{V1}"),
    (V1.upper(), f"magnet:?xt=urn:btih:{V1}"),
    (V1_BASE32, f"magnet:?xt=urn:btih:{V1}"),
    (V2, f"magnet:?xt=urn:btmh:1220{V2}"),
    (Target(info_hash=V1, v1_hash=V1, v2_hash=V2),
     f"magnet:?xt=urn:btih:{V1}&xt=urn:btmh:1220{V2}"),
    (Target(info_hash=V2), f"magnet:?xt=urn:btmh:1220{V2}"),
])
def test_magnet_for_hashes(value, expected):
    assert magnet_for(value) == expected


def test_magnet_for_appends_trackers_once():
    target = Target(info_hash=V1, v1_hash=V1, name="A & B", trackers=("udp://a.example:1",),
                    peers=("10.0.0.2:6881",), web_seeds=("http://w.example/f",))
    link = magnet_for(target, ["udp://a.example:1", "http://b.example/announce?k=1&x=2",
                               "http://b.example/announce?k=1&x=2", ""])
    assert link == magnet(
        f"xt=urn:btih:{V1}",
        "dn=A%20%26%20B",
        "tr=udp%3A%2F%2Fa.example%3A1",
        "tr=http%3A%2F%2Fb.example%2Fannounce%3Fk%3D1%26x%3D2",
        "x.pe=10.0.0.2:6881",
        "ws=http%3A%2F%2Fw.example%2Ff",
    )


def test_magnet_for_takes_one_tracker_as_a_string():
    assert magnet_for(V1, "udp://a.example:1") == magnet_for(V1, ["udp://a.example:1"])


@pytest.mark.parametrize("target", [
    Target(info_hash=V1, v1_hash=V1, name="Vol. 2."),
    Target(info_hash=V1, v1_hash=V1, peers=("]",)),
    Target(info_hash=V1, v1_hash=V1, web_seeds=("http://w.example/a.",)),
])
def test_magnet_for_never_ends_in_what_reads_as_punctuation(target):
    (parsed,) = parse_text(f"{magnet_for(target)}\n").targets
    assert parsed.name == target.name
    assert (parsed.peers, parsed.web_seeds) == (target.peers, target.web_seeds)


@pytest.mark.parametrize("value", ["", "nope", V1[:39], V2[:63]])
def test_magnet_for_refuses_what_is_not_a_hash(value):
    with pytest.raises(ValueError, match="not an info hash"):
        magnet_for(value)


def test_libtorrent_reads_magnet_for_as_written():
    """libtorrent is the reader of these links: names, trackers, peers and seeds survive."""
    lt = pytest.importorskip("libtorrent")
    target = Target(info_hash=V1, v1_hash=V1, v2_hash=V2, name="Film (2010) é + ü & co",
                    trackers=("udp://a.example:1/announce",), peers=("10.0.0.2:6881", "[::1]:6882"),
                    web_seeds=("http://w.example/f?a=1&b=2",))
    params = lt.parse_magnet_uri(magnet_for(target, ["http://b.example/announce"]))
    assert params.name == target.name
    assert params.trackers == ["udp://a.example:1/announce", "http://b.example/announce"]
    assert params.peers == [("10.0.0.2", 6881), ("::1", 6882)]
    assert params.url_seeds == ["http://w.example/f?a=1&b=2"]
    assert (str(params.info_hashes.v1), str(params.info_hashes.v2)) == (V1, V2)


# Robustness ---------------------------------------------------------------------------------
@pytest.mark.parametrize("line", [
    "a" * 1_000_000,
    "f" * 1_000_000,
    ("a" * 39 + "-") * 25_000,
    (V1 + " ") * 24_000,
    "x " * 500_000,
    "magnet:?" + ")" * 1_000_000,
    "magnet:?xt=urn:btih:" + "a" * 1_000_000,
    "magnet:?" * 125_000,
    "magnet:" * 140_000,
    ("magnet:?xt=urn:btih:" + V1 + " ") * 16_000,
    "&amp;" * 200_000,
    ("ab2" * 11 + " ") * 30_000,
    "é" * 1_000_000,
    "\x00" * 1_000_000,
])
def test_a_megabyte_line_is_parsed_quickly(line):
    start = time.perf_counter()
    result = parse_text(line)
    assert time.perf_counter() - start < 5  # quadratic work on a megabyte would take minutes
    assert result.targets or result.rejected


def test_lone_surrogates_are_replaced():
    result = parse_text(f"\ud800{V1}\ud800\nmagnet:?xt=urn:btih:{V1_B}&dn=a\ud800b\n\udfff")
    assert found(result) == [V1, V1_B]
    assert result.targets[1].name == "a?b"
    assert result.rejected == [Rejected("?", "no info hash or magnet link found")]


# Properties ---------------------------------------------------------------------------------
HEX_CHARS = "0123456789abcdefABCDEF"
hex40 = st.text(HEX_CHARS, min_size=40, max_size=40)
hex64 = st.text(HEX_CHARS, min_size=64, max_size=64)
# Characters that end a run of ASCII letters and digits, including non-ASCII letters and digits.
delimiters = st.text(st.sampled_from(" \t,;:/?&=\"'()[]<>|-_.#%é，１٣😀\x00"),
                     min_size=1, max_size=3)
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
filler = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=LINE_BREAKS),
                 max_size=30)
LONG_RUN = re.compile(r"[0-9A-Za-z]{32,}")


def harmless(text):
    """Text with no run that could be a hash (32+ letters/digits) and no magnet link."""
    return "magnet" not in text.lower() and not LONG_RUN.search(text)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.one_of(hex40, hex64), filler.filter(harmless), delimiters, delimiters),
                min_size=1, max_size=8),
       filler.filter(harmless))
def test_embedded_hashes_are_all_found_in_order(pieces, tail):
    line = "".join(f"{text}{left}{value}{right}" for value, text, left, right in pieces) + tail
    expected = [value.lower() for value, *_ in pieces]
    result = parse_text(line)
    assert [t.info_hash for t in result.targets] == list(dict.fromkeys(expected))
    assert len(result.duplicates) == len(expected) - len(set(expected))
    assert result.rejected == []
    for target in result.targets + result.duplicates:
        assert (target.v1_hash or target.v2_hash) == target.info_hash


@settings(max_examples=200)
@given(st.one_of(hex40, hex64))
def test_a_line_of_one_hash_parses_as_the_general_rules_parse_it(value):
    fast = parse_text(value)
    with mock.patch.object(hashes, "BARE_HASH", re.compile(r"(?!)")):  # the fast path never taken
        general = parse_text(value)
    assert fast == general
    assert [t.info_hash for t in fast.targets] == [value.lower()]


near_miss = st.text(HEX_CHARS + "ghxyzGHXYZ234567", min_size=0, max_size=70)


def no_hash_run(text):
    return all(len(run) not in (32, 40, 64) for run in re.findall(r"[0-9A-Za-z]+", text))


@settings(max_examples=200)
@given(st.lists(st.tuples(near_miss, delimiters), max_size=6).map(
    lambda pairs: "".join(run + delimiter for run, delimiter in pairs)).filter(no_hash_run))
def test_runs_of_other_lengths_are_never_hashes(text):
    result = parse_text(text)
    assert result.targets == [] and result.duplicates == []
    assert len(result.rejected) == (1 if text.strip() else 0)


@settings(max_examples=200)
@given(st.text())
def test_any_text_parses_and_every_line_is_accounted_for(text):
    parse_text(text)
    for line in text.splitlines():
        result = parse_items([line])
        if line.strip():
            assert result.targets or result.rejected
        else:
            assert result == ParseResult()


@settings(max_examples=200)
@given(st.one_of(hex40, hex64, hex40.map(lambda h: base64.b32encode(bytes.fromhex(h)).decode())))
def test_magnet_for_round_trips_a_hash(value):
    (target,) = parse_text(magnet_for(value)).targets
    assert target.info_hash == normalize_info_hash(value)


printable = st.characters(exclude_categories=("Cs", "Cc"))
names = st.text(printable, min_size=1).map(str.strip).filter(bool)


distinct = st.lists(names, max_size=3, unique=True).map(tuple)


@settings(max_examples=200)
@given(hex40, hex64, st.booleans(), st.none() | names, distinct, distinct, distinct, distinct)
def test_magnet_for_round_trips_a_target(v1, v2, hybrid, name, trackers, peers, web_seeds, extra):
    v1, v2 = v1.lower(), v2.lower() if hybrid else None
    target = Target(info_hash=v1, v1_hash=v1, v2_hash=v2, name=name, trackers=trackers,
                    peers=peers, web_seeds=web_seeds)
    (parsed,) = parse_text(magnet_for(target, extra)).targets
    assert (parsed.v1_hash, parsed.v2_hash, parsed.name) == (target.v1_hash, target.v2_hash, name)
    assert parsed.trackers == tuple(dict.fromkeys(trackers + extra))
    assert (parsed.peers, parsed.web_seeds) == (peers, web_seeds)
    assert parsed.magnet == magnet_for(parsed)
