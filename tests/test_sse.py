"""SSE decoder conformance (WHATWG event-stream rules) and encoder round trips."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tokenwire.protocol import SSEDecoder, encode_comment, encode_event


def decode_all(*pieces: bytes) -> list:
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    return events


def test_line_endings_lf_cr_crlf_are_equivalent() -> None:
    for sep in (b"\n", b"\r", b"\r\n"):
        events = decode_all(b"data: a" + sep + b"data: b" + sep + sep + b"data: c" + sep + sep)
        assert [e.data for e in events] == ["a\nb", "c"]


def test_crlf_split_between_pieces_is_one_line_end() -> None:
    events = decode_all(b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n")
    assert [e.data for e in events] == ["x", "y"]


def test_comments_fields_and_defaults() -> None:
    events = decode_all(
        b": ping\n\nevent: update\nid: 7\nretry: 1500\ndata:no-space\n\ndata: second\n\n"
    )
    assert len(events) == 2
    first, second = events
    assert (first.event, first.id, first.retry, first.data) == ("update", "7", 1500, "no-space")
    # event type resets per event; the last event id persists
    assert (second.event, second.id, second.retry) == ("message", "7", None)


def test_event_without_data_is_not_dispatched_but_id_sticks() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 3\nevent: x\n\n") == []
    assert decoder.last_event_id == "3"
    assert decoder.feed(b"data: later\n\n")[0].event == "message"


def test_empty_data_line_dispatches_empty_string() -> None:
    assert [e.data for e in decode_all(b"data\n\ndata:\n\n")] == ["", ""]


def test_field_rules() -> None:
    events = decode_all(
        b"id: a\x00b\nretry: 12x\nunknown: z\ndata:  two spaces\n\n"  # NUL id and bad retry ignored
    )
    assert events[0].id is None and events[0].retry is None
    assert events[0].data == " two spaces"  # only one leading space is removed


def test_bom_only_at_start_and_split() -> None:
    assert [e.data for e in decode_all(b"\xef\xbb", b"\xbfdata: x\n\n")] == ["x"]
    # A second BOM is not stripped: it becomes part of the field name, which is then unknown.
    assert decode_all(b"\xef\xbb\xbfdata: x\n\n\xef\xbb\xbfdata: y\n\n")[0].data == "x"


def test_utf8_split_across_pieces() -> None:
    payload = "data: héllo 😀\n\n".encode()
    for cut in range(1, len(payload)):
        assert [e.data for e in decode_all(payload[:cut], payload[cut:])] == ["héllo 😀"]


def test_incomplete_event_at_eof_is_dropped() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: complete\n\ndata: partial") != []
    assert decoder.pending
    assert decoder.close() == []


def test_comment_encoder() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(encode_comment("ping") + encode_comment()) == []
    assert decoder.comments == 2


@given(
    st.lists(
        st.tuples(
            st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
            st.one_of(st.none(), st.integers(min_value=0, max_value=10**9)),
            st.one_of(st.none(), st.sampled_from(["update", "op", "x-y"])),
        ),
        max_size=8,
    ),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_encode_then_decode_in_any_pieces(events, cuts) -> None:
    wire = b"".join(encode_event(d, id=i, event=e) for d, i, e in events)
    bounds = sorted({c % (len(wire) + 1) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *bounds], [*bounds, len(wire)], strict=True)]
    decoded = decode_all(*pieces)
    # CR and CRLF inside data are line ends on the wire, so they come back as LF.
    expected = [d.replace("\r\n", "\n").replace("\r", "\n") for d, _, _ in events]
    assert [e.data for e in decoded] == expected
    assert [e.event for e in decoded] == [e or "message" for _, _, e in events]
