"""Static endpoints: file and CLI parsing, validation messages, pool assignment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inferpool.sources.static import (
    EndpointsFileError,
    StaticEndpoint,
    StaticSource,
    endpoints_for_pool,
    load_endpoints_file,
    parse_endpoint_spec,
)
from inferpool.state import Datastore, Endpoint, Pool

GOOD = """\
endpoints:
  - address: 127.0.0.1
    port: 8000
    name: vllm-0          # optional, default address:port
    labels: {app: vllm-llama3-8b-instruct}
  - address: 10.0.0.12
    labels:
      app: vllm-llama3-8b-instruct
      inference.networking.k8s.io/engine-type: sglang
  - address: "::1"
    port: 9000
    labels: {app: other}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "endpoints.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_file(tmp_path: Path) -> None:
    eps = load_endpoints_file(write(tmp_path, GOOD))
    assert [(e.address, e.port, e.name) for e in eps] == [
        ("127.0.0.1", 8000, "vllm-0"),
        ("10.0.0.12", None, None),
        ("::1", 9000, None),
    ]
    assert eps[1].labels["inference.networking.k8s.io/engine-type"] == "sglang"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "endpoints:\n  - address: 1.2.3.4\n    port: 70000\n",
            "endpoints[0].port: Input should be less than or equal to 65535",
        ),
        ("endpoints:\n  - port: 80\n", "endpoints[0].address: Field required"),
        (
            "endpoints:\n  - address: 'bad host!'\n",
            "endpoints[0].address: Value error, not an IP address or host name",
        ),
        (
            "endpoints:\n  - address: a\n    labelz: {}\n",
            "endpoints[0].labelz: Extra inputs are not permitted",
        ),
        (
            "endpoints:\n  - address: a\n    labels: {app: [1]}\n",
            "endpoints[0].labels.app: Input should be a valid string",
        ),
        ("endpoints: [\n", "line "),
        ("hosts: []\n", "hosts: Extra inputs are not permitted"),
    ],
)
def test_file_errors_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(EndpointsFileError) as info:
        load_endpoints_file(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EndpointsFileError, match=r"nope\.yaml"):
        load_endpoints_file(tmp_path / "nope.yaml")


def test_empty_file_and_bare_list(tmp_path: Path) -> None:
    assert load_endpoints_file(write(tmp_path, "")) == []
    assert load_endpoints_file(write(tmp_path, "- address: h1\n"))[0].address == "h1"


@pytest.mark.parametrize(
    ("spec", "address", "port", "name", "labels"),
    [
        ("127.0.0.1:8000", "127.0.0.1", 8000, None, {}),
        ("127.0.0.1:8000,app=vllm,tier=a", "127.0.0.1", 8000, None, {"app": "vllm", "tier": "a"}),
        ("[::1]:8001,app=x", "::1", 8001, None, {"app": "x"}),
        ("::1", "::1", None, None, {}),
        ("gpu-host.internal, app = x , name=gpu-0", "gpu-host.internal", None, "gpu-0", {"app": "x"}),
    ],
)
def test_cli_specs(
    spec: str, address: str, port: int | None, name: str | None, labels: dict[str, str]
) -> None:
    assert parse_endpoint_spec(spec) == StaticEndpoint(address=address, port=port, name=name, labels=labels)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1.2.3.4:http", "port: Input should be a valid integer"),
        ("1.2.3.4:0", "port: Input should be greater than or equal to 1"),
        ("1.2.3.4:80,app", "labels: expected key=value"),
        ("[::1:80", "unclosed '['"),
        ("[::1]x", "unexpected 'x'"),
        (":80", "address"),
    ],
)
def test_cli_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(EndpointsFileError, match=re.escape(message)):
        parse_endpoint_spec(spec)


def pool(name: str = "llama", ports: list[int] | None = None, app: str = "vllm-llama3-8b-instruct") -> Pool:
    return Pool("default", name, {"app": app}, ports or [8000])


def test_assignment_by_selector_and_ports(tmp_path: Path) -> None:
    eps = load_endpoints_file(write(tmp_path, GOOD))
    got = endpoints_for_pool(pool(ports=[8000, 8001]), eps)
    assert [(e.name, e.port, e.engine) for e in got] == [
        ("vllm-0", 8000, "vllm"),  # explicit port only
        ("10.0.0.12:8000", 8000, "sglang"),  # no port: each of the pool's target ports
        ("10.0.0.12:8001", 8001, "sglang"),
    ]
    assert [e.name for e in endpoints_for_pool(pool("o", app="other"), eps)] == ["[::1]:9000"]
    named = StaticEndpoint(address="h", name="h-0", labels={"app": "vllm-llama3-8b-instruct"})
    # one named server, several data-parallel ranks: llm-d-router's "<pod>-rank-<i>" names
    assert [e.name for e in endpoints_for_pool(pool(ports=[1, 2]), [named])] == ["h-0-rank-0", "h-0-rank-1"]
    assert [e.name for e in endpoints_for_pool(pool(ports=[1]), [named])] == ["h-0"]


def test_source_follows_pools_and_keeps_foreign_endpoints(tmp_path: Path) -> None:
    store = Datastore()
    source = StaticSource(store, load_endpoints_file(write(tmp_path, GOOD)))
    source.start()
    assert store.all_endpoints() == []  # no pools yet

    store.upsert_pool(pool())
    assert sorted(e.name for e in store.endpoints("default/llama")) == ["10.0.0.12:8000", "vllm-0"]

    foreign = store.upsert_endpoint(Endpoint("sim-0", "127.0.0.1", 9999, "default/llama"))
    kept = store.endpoint("default/llama", "vllm-0")
    assert kept is not None
    kept.in_flight = 3  # state on a kept endpoint survives re-syncs

    store.upsert_pool(pool(ports=[8000, 8001]))  # the pool changed: re-evaluated
    assert sorted(e.name for e in store.endpoints("default/llama")) == [
        "10.0.0.12:8000",
        "10.0.0.12:8001",
        "sim-0",
        "vllm-0",
    ]
    assert store.endpoint("default/llama", "vllm-0") is kept and kept.in_flight == 3

    store.upsert_pool(pool(app="nobody"))  # selector no longer matches: our endpoints leave
    assert store.endpoints("default/llama") == [foreign]

    store.upsert_pool(pool("o", app="other"))
    assert [e.hostport for e in store.endpoints("default/o")] == ["[::1]:9000"]
    store.delete_pool("default/o")
    store.upsert_pool(pool("o", app="other"))  # re-created pool gets its endpoints again
    assert [e.name for e in store.endpoints("default/o")] == ["[::1]:9000"]

    source.set_endpoints([])
    assert store.endpoints("default/o") == []
    source.stop()
    store.upsert_pool(pool("p", app="other"))
    assert store.endpoints("default/p") == []


def test_stop_with_remove() -> None:
    store = Datastore()
    store.upsert_pool(pool())
    source = StaticSource(store, [parse_endpoint_spec("1.1.1.1:8000,app=vllm-llama3-8b-instruct")])
    source.start()
    assert len(store.endpoints("default/llama")) == 1
    source.stop(remove=True)
    assert store.endpoints("default/llama") == []
