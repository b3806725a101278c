from __future__ import annotations

from multidict import CIMultiDict

from inferpool.gateway.headers import end_to_end, lower_dict


def test_hop_by_hop_and_connection_named_headers_are_dropped() -> None:
    h = CIMultiDict(
        [
            ("Connection", "keep-alive, X-Secret"),
            ("Keep-Alive", "timeout=5"),
            ("X-Secret", "1"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "x"),
            ("Upgrade", "h2c"),
            ("Content-Length", "12"),
            ("Content-Type", "application/json"),
            ("Accept", "a"),
            ("Accept", "b"),
        ]
    )
    out = end_to_end(h, drop=("host",))
    assert list(out.items()) == [("Content-Type", "application/json"), ("Accept", "a"), ("Accept", "b")]


def test_lower_dict_keeps_first_value() -> None:
    assert lower_dict(CIMultiDict([("X-A", "1"), ("x-a", "2"), ("B", "3")])) == {"x-a": "1", "b": "3"}
