"""Endpoints listed by hand: a small YAML file or `addr:port,label=value` strings.

For model servers outside Kubernetes (`inferpool serve --endpoints FILE`). Each endpoint
joins every pool whose selector matches its labels, exactly as a pod would:

```yaml
# endpoints.yaml
endpoints:
  - address: 127.0.0.1
    port: 8000              # optional: without it, each of the pool's target ports
    name: vllm-0            # optional, default "address:port"; "vllm-0-rank-<i>" per target port
    labels:
      app: vllm-llama3-8b-instruct
      inference.networking.k8s.io/engine-type: vllm   # optional, default vllm
  - address: 10.0.0.12
    labels: {app: vllm-llama3-8b-instruct}
```

The same on a command line: `127.0.0.1:8000,app=vllm-llama3-8b-instruct`, `[::1]:8001,app=x`,
or `10.0.0.12,app=x` (no port). `name=` is taken as the endpoint's name, not a label.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inferpool.scrape.engines import engine_of
from inferpool.sources.ranks import rank_endpoint_name
from inferpool.state import ChangeEvent, Datastore, Endpoint, Pool

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class EndpointsFileError(ValueError):
    """A static endpoints file or list that does not validate; one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class StaticEndpoint(BaseModel):
    """One hand-listed model server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str
    port: int | None = Field(default=None, ge=1, le=65535)
    name: str | None = Field(default=None, min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip().removeprefix("[").removesuffix("]")
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        if not _HOSTNAME.match(value):
            raise ValueError(f"not an IP address or host name: {value!r}")
        return value


class EndpointsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[StaticEndpoint] = Field(default_factory=list)


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        out.append(f"{where or '(top level)'}: {error['msg']}")
    return out


def load_endpoints(data: Any, source: str = "<endpoints>") -> list[StaticEndpoint]:
    """Validate already-loaded YAML/JSON data (`{"endpoints": [...]}` or a bare list)."""
    if data is None:
        return []
    if isinstance(data, list):
        data = {"endpoints": data}
    try:
        return EndpointsFile.model_validate(data).endpoints
    except ValidationError as exc:
        raise EndpointsFileError(source, _problems(exc)) from None


def load_endpoints_file(path: str | Path) -> list[StaticEndpoint]:
    """Read and validate an endpoints YAML file; errors name the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EndpointsFileError(str(path), [exc.strerror or str(exc)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise EndpointsFileError(
            str(path), [f"{where}invalid YAML: {getattr(exc, 'problem', exc)}"]
        ) from None
    return load_endpoints(data, str(path))


def parse_endpoint_spec(spec: str) -> StaticEndpoint:
    """`addr[:port][,key=value...]` (IPv6 in brackets) -> StaticEndpoint."""
    head, *pairs = [part.strip() for part in spec.split(",")]
    fields: dict[str, Any] = {"labels": {}}
    if head.startswith("["):
        close = head.find("]")
        if close < 0:
            raise EndpointsFileError(spec, ["address: unclosed '[' in IPv6 address"])
        fields["address"], rest = head[1:close], head[close + 1 :]
        port = rest.removeprefix(":") if rest.startswith(":") else None
        if rest and port is None:
            raise EndpointsFileError(spec, [f"address: unexpected {rest!r} after ']'"])
    elif head.count(":") == 1:
        fields["address"], port = head.split(":")
    else:  # a bare host, or a bare IPv6 address without port
        fields["address"], port = head, None
    if port is not None:
        fields["port"] = port
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise EndpointsFileError(spec, [f"labels: expected key=value, got {pair!r}"])
        if key.strip() == "name":
            fields["name"] = value.strip()
        else:
            fields["labels"][key.strip()] = value.strip()
    try:
        return StaticEndpoint.model_validate(fields)
    except ValidationError as exc:
        raise EndpointsFileError(spec, _problems(exc)) from None


def parse_endpoint_specs(specs: Iterable[str]) -> list[StaticEndpoint]:
    return [parse_endpoint_spec(s) for s in specs]


def endpoints_for_pool(pool: Pool, endpoints: Iterable[StaticEndpoint]) -> list[Endpoint]:
    """The `Endpoint`s a pool gets from a static list: selector match, port from the entry or the pool."""
    out: list[Endpoint] = []
    for spec in endpoints:
        if not pool.selects(spec.labels):
            continue
        ports = [spec.port] if spec.port is not None else list(pool.target_ports)
        for rank, port in enumerate(ports):
            host = f"[{spec.address}]" if ":" in spec.address else spec.address
            if spec.name is None:
                name = f"{host}:{port}"
            elif spec.port is None and len(ports) > 1:
                name = rank_endpoint_name(spec.name, rank)  # one server, several DP ranks (v1 targetPorts)
            else:
                name = spec.name
            out.append(
                Endpoint(
                    name=name,
                    address=spec.address,
                    port=port,
                    pool=pool.key,
                    labels=dict(spec.labels),
                    engine=engine_of(spec.labels),
                )
            )
    return out


class StaticSource:
    """Keeps a fixed endpoint list assigned to the pools whose selectors match.

    It only adds and removes its own endpoints, so it can share a pool with another source.
    """

    def __init__(self, datastore: Datastore, endpoints: Iterable[StaticEndpoint]) -> None:
        self.datastore = datastore
        self.endpoints = list(endpoints)
        self._owned: dict[str, set[str]] = {}  # pool key -> endpoint names this source added
        self._unsubscribe: Callable[[], None] | None = None
        self._syncing = False

    def start(self) -> None:
        """Assign endpoints now and again whenever a pool is added, changed or removed."""
        if self._unsubscribe is None:
            self._unsubscribe = self.datastore.subscribe(self._on_change)
        self.sync()

    def stop(self, remove: bool = False) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if remove:
            for pool, names in self._owned.items():
                for name in names:
                    self.datastore.remove_endpoint(pool, name)
            self._owned.clear()

    def set_endpoints(self, endpoints: Iterable[StaticEndpoint]) -> None:
        """Replace the list (e.g. the file was edited) and re-assign."""
        self.endpoints = list(endpoints)
        self.sync()

    def _on_change(self, event: ChangeEvent) -> None:
        if event.kind == "pool" and not self._syncing:
            self.sync()

    def sync(self) -> None:
        self._syncing = True
        try:
            pools: Mapping[str, Pool] = {p.key: p for p in self.datastore.pools()}
            for key in [k for k in self._owned if k not in pools]:
                del self._owned[key]  # the datastore dropped the pool's endpoints with it
            for key, pool in pools.items():
                wanted = {e.name: e for e in endpoints_for_pool(pool, self.endpoints)}
                owned = self._owned.setdefault(key, set())
                for name in owned - wanted.keys():
                    self.datastore.remove_endpoint(key, name)
                for endpoint in wanted.values():
                    known = self.datastore.endpoint(key, endpoint.name)
                    if known is None or (known.address, known.port, known.labels) != (
                        endpoint.address,
                        endpoint.port,
                        endpoint.labels,
                    ):
                        self.datastore.upsert_endpoint(endpoint)
                self._owned[key] = set(wanted)
        finally:
            self._syncing = False
