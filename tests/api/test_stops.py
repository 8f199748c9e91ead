"""Stop sequences on streamed text: never emit past a stop, whatever the split into pieces."""

from itertools import pairwise

from hypothesis import example, given, settings
from hypothesis import strategies as st

from wgllm.api.stops import StopText


def _run(pieces, stops):
    s = StopText(stops)
    out = [s.push(p) for p in pieces]
    return "".join(out) + s.flush(), s.hit, out


def _reference(pieces, stops):
    """Generation stops at the first piece after which the text holds a stop sequence; the output
    is cut where the earliest one present starts (recomputed on the whole text, no hold-back)."""
    text = ""
    for p in pieces:
        text += p
        found = [(text.find(x), x) for x in stops if x in text]
        if found:
            return text[: min(found)[0]], min(found)[1]
    return text, None


@settings(max_examples=400, deadline=None)
@given(text=st.text(alphabet="abc\n", max_size=30), stops=st.lists(st.text(alphabet="abc\n", min_size=1, max_size=4),
                                                                     max_size=4), cuts=st.lists(st.integers(0, 30)))
@example(text="\naa", stops=["a", "\naa"], cuts=[2])  # a shorter stop completes first: it wins
def test_stream_equals_cut_at_the_first_stop(text, stops, cuts):
    bounds = sorted({0, len(text), *[c for c in cuts if c <= len(text)]})
    pieces = [text[a:b] for a, b in pairwise(bounds)]
    got, hit, _ = _run(pieces, stops)
    want, want_hit = _reference(pieces, stops)
    assert got == want
    assert (hit is None) == (want_hit is None)


def test_holds_back_a_possible_stop_start_then_releases_it():
    s = StopText(["END"])
    assert s.push("abcE") == "abc"
    assert s.push("N") == ""
    assert s.push("x") == "ENx"
    assert s.hit is None


def test_stop_split_over_pieces_is_cut():
    got, hit, out = _run(["Hello wor", "ld! STO", "P and more"], ["STOP"])
    assert got == "Hello world! " and hit == "STOP" and out[-1] == ""


def test_nothing_after_a_hit():
    s = StopText(["x"])
    assert s.push("ax") == "a"
    assert s.push("more") == "" and s.flush() == ""
