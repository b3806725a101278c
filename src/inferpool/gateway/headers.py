"""Header handling an HTTP proxy owes both sides: hop-by-hop removal, forwarding facts."""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

# RFC 9110 §7.6.1 connection-specific fields, plus Content-Length (recomputed from the body we send).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)

SERVED_HEADER = "x-gateway-destination-endpoint-served"
REQUEST_ID_HEADER = "x-request-id"


def _connection_named(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    named: set[str] = set()
    for value in headers.getall("connection", []):
        named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return named


def end_to_end(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], drop: Iterable[str] = ()
) -> CIMultiDict[str]:
    """The end-to-end headers of a message: hop-by-hop ones and those listed in Connection removed."""
    skip = _HOP_BY_HOP
    if drop:
        skip = skip | {d.lower() for d in drop}
    if "connection" in headers:
        skip = skip | _connection_named(headers)
    # built from one list in C rather than an add() per header (every answer passes here)
    return CIMultiDict([item for item in headers.items() if item[0].lower() not in skip])


def lower_dict(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> dict[str, str]:
    """First value of each header under its lower-cased name (what route matching and the core read)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), value)
    return out


def hop_by_hop_and(*names: str) -> frozenset[str]:
    """The names `end_to_end_lower` leaves out: the hop-by-hop ones and `names` (lower-case)."""
    return _HOP_BY_HOP | {n.lower() for n in names}


def end_to_end_lower(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], skip: frozenset[str] = _HOP_BY_HOP
) -> dict[str, str]:
    """`lower_dict(end_to_end(headers))` in one pass, leaving out `skip` too (from `hop_by_hop_and`,
    built once by the caller: the request path does this per request)."""
    if "connection" in headers:
        skip = skip | _connection_named(headers)
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower not in skip and lower not in out:
            out[lower] = value
    return out
