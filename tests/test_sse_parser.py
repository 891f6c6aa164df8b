"""The SDK's SSE parser, including a message cut off by a dropped connection."""

from flowlab.client._sse import SSEParser


def feed(parser: SSEParser, text: str) -> list:
    return [m for line in text.split("\n") if (m := parser.feed_line(line)) is not None]


def test_parses_events_ids_comments_and_multiline_data() -> None:
    parser = SSEParser()
    msgs = feed(parser, ': hello\nretry: 1000\n\nid: 8\nevent: item\ndata: {"a":\ndata: 1}\n\n')
    assert [(m.event, m.data, m.id) for m in msgs] == [("item", '{"a":\n1}', "8")]
    assert parser.last_id == "8"


def test_reset_drops_a_half_message_but_keeps_the_last_complete_id() -> None:
    parser = SSEParser()
    feed(parser, "id: 8\nevent: item\ndata: {}\n\nid: 16\nevent: item\n")  # the connection drops here
    parser.reset()
    msgs = feed(parser, ': reconnected\n\nid: 24\nevent: item\ndata: {"n": 3}\n\n')
    assert [(m.id, m.data) for m in msgs] == [("24", '{"n": 3}')]
    assert parser.last_id == "24"
