"""`inferpool envoy-config`: the reference Envoy config for `inferpool epp`, filled in from the
pool's manifests and endpoints, ready for `envoy -c`.

What an Envoy-based gateway (GKE's, Istio, Envoy Gateway, kgateway) sets up by itself from an
HTTPRoute to an InferencePool; for running Envoy yourself, e.g. beside `inferpool epp` on one
machine. Every choice the template leaves open (docs/epp.md, "Envoy config") is a flag here.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from inferpool.api import load_manifests
from inferpool.extproc.envoy import ACCOUNTING_MODES, Address, EnvoyConfig
from inferpool.sources.convert import to_state
from inferpool.sources.static import EndpointsFileError, endpoints_for_pool, load_endpoints_file
from inferpool.state import Pool

PICKED_CLUSTERS = {"original-destination": "original_destination_cluster", "pool-endpoints": "pool_endpoints"}


class ConfigError(Exception):
    """A choice that cannot make a working config; the message says which flag to change."""


def _ip_port(value: str, flag: str) -> tuple[str, int]:
    """`IP:PORT` or `[IPv6]:PORT`. Envoy's static clusters take IP addresses, not host names."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag} {value!r}: expected IP:PORT, e.g. 127.0.0.1:9002")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"{flag} {value!r}: {host!r} is not an IP address (Envoy's static clusters need one)"
        ) from None
    return host, int(port)


def _choose_pool(pools: list[Pool], name: str | None, namespace: str) -> Pool:
    if name is not None:
        for pool in pools:
            if (pool.name, pool.namespace) == (name, namespace):
                return pool
        raise ConfigError(f"no InferencePool {namespace}/{name} in the manifests")
    if len(pools) == 1:
        return pools[0]
    if not pools:
        raise ConfigError("the manifests hold no InferencePool")
    names = ", ".join(p.key for p in pools)
    raise ConfigError(f"several InferencePools ({names}): choose one with --pool-name")


def _pool_addresses(pool: Pool, endpoints_file: Path) -> list[Address]:
    addresses: list[Address] = []
    for endpoint in endpoints_for_pool(pool, load_endpoints_file(endpoints_file)):
        try:
            ipaddress.ip_address(endpoint.address)
        except ValueError:
            raise ConfigError(
                f"{endpoints_file}: endpoint {endpoint.name}: {endpoint.address!r} is a host name; "
                "Envoy's static pool cluster needs IP addresses"
            ) from None
        addresses.append((endpoint.address, endpoint.port))
    return addresses


def build_config(
    manifests: list[Path],
    endpoints_file: Path | None,
    pool_name: str | None,
    pool_namespace: str,
    epp: list[str],
    epp_tls: bool,
    listen: str,
    admin_port: int,
    accounting: str,
    failure_mode: str | None,
    picked_cluster: str | None,
) -> tuple[EnvoyConfig, list[str]]:
    """The config, and notes for the user (what else to pass `inferpool epp`, what a choice costs)."""
    loaded = load_manifests([str(m) for m in manifests])
    if loaded.errors:
        problems = sorted(loaded.errors, key=lambda e: (e.file, e.line))
        raise ConfigError("the manifests do not validate:\n" + "\n".join(str(p) for p in problems))
    pool = _choose_pool(to_state(loaded).pools, pool_name, pool_namespace)
    pool_addresses = _pool_addresses(pool, endpoints_file) if endpoints_file else []
    mode = failure_mode or pool.failure_mode
    fail_open = mode == "FailOpen"
    chosen = ACCOUNTING_MODES[accounting]
    cluster = picked_cluster or ("pool-endpoints" if pool_addresses else "original-destination")
    if (fail_open or cluster == "pool-endpoints") and not pool_addresses:
        why = (
            "FailOpen sends unpicked requests to them"
            if fail_open
            else "the pool-endpoints cluster lists them"
        )
        raise ConfigError(f"{why}: give the pool's endpoints with --endpoints FILE (as `inferpool epp`'s)")
    listen_host, listen_port = _ip_port(listen, "--listen")
    epp_first, *epp_more = [_ip_port(address, "--epp") for address in epp]
    notes = [f"InferencePool {pool.key}: {mode}, {len(pool_addresses)} endpoint(s) from --endpoints"]
    if endpoints_file is not None and not pool_addresses:
        notes.append(f"warning: no endpoint of {endpoints_file} matches the pool's selector {pool.selector}")
    if chosen.epp_args:
        notes.append(f"accounting {accounting}: run inferpool epp with {' '.join(chosen.epp_args)}")
    if fail_open and chosen.request_body_mode == "FULL_DUPLEX_STREAMED":
        notes.append(
            "warning: with streamed request bodies Envoy fails every request while the picker is down, "
            "FailOpen or not (docs/epp.md); use --accounting sampled for a FailOpen pool"
        )
    if not epp_tls:
        notes.append("plaintext gRPC to the picker: run inferpool epp with --secure-serving=false")
    config = EnvoyConfig(
        epp_port=epp_first,
        more_epp_ports=tuple(epp_more),
        pool_ports=pool_addresses,
        failure_mode_allow=fail_open,
        request_body_mode=chosen.request_body_mode,
        response_body_mode=chosen.response_body_mode,
        picked_cluster=PICKED_CLUSTERS[cluster],
        listen_port=listen_port,
        listen_address=listen_host,
        admin_port=admin_port,
        epp_tls=epp_tls,
    )
    return config, notes


def envoy_config(
    manifests: list[Path] = typer.Option(
        ...,
        "-f",
        "--filename",
        help="Manifests with the InferencePool (its failureMode), as for `inferpool epp -f`.",
    ),
    endpoints: Path | None = typer.Option(
        None,
        "--endpoints",
        help="The pool's model servers, the file `inferpool epp --endpoints` reads: Envoy's pool cluster "
        "(FailOpen traffic, fallback lists). Without it, only the picked endpoint is reached (ORIGINAL_DST).",
    ),
    pool_name: str | None = typer.Option(
        None, "--pool-name", help="Which pool, when the manifests hold several."
    ),
    pool_namespace: str = typer.Option("default", "--pool-namespace"),
    epp: list[str] = typer.Option(
        ["127.0.0.1:9002"],
        "--epp",
        help="The picker's ext_proc address, IP:PORT; repeat for several replicas.",
    ),
    epp_tls: bool = typer.Option(
        True,
        "--epp-tls/--no-epp-tls",
        help="TLS to the picker (it serves TLS unless --secure-serving=false).",
    ),
    listen: str = typer.Option("127.0.0.1:8081", "--listen", help="Where clients connect, IP:PORT."),
    admin_port: int = typer.Option(
        9901, "--admin-port", min=1, max=65535, help="Envoy's admin port (/ready, /stats)."
    ),
    accounting: str = typer.Option(
        "sampled",
        "--accounting",
        help="How Envoy hands bodies to the picker (docs/epp.md, 'Accounting'): "
        + ", ".join(ACCOUNTING_MODES)
        + ".",
    ),
    failure_mode: str | None = typer.Option(
        None,
        "--failure-mode",
        help="FailOpen or FailClose; default: the pool's extensionRef / endpointPickerRef.",
    ),
    picked_cluster: str | None = typer.Option(
        None,
        "--picked-cluster",
        help="original-destination (one ip:port, upstream's way) or pool-endpoints (honours the picker's "
        "--fallback-endpoints list); default pool-endpoints when --endpoints is given.",
    ),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write here instead of standard output."),
) -> None:
    """Render the reference Envoy config for `inferpool epp` from the pool's manifests, for `envoy -c`."""
    try:
        if accounting not in ACCOUNTING_MODES:
            raise ConfigError(f"--accounting {accounting!r}: one of {', '.join(ACCOUNTING_MODES)}")
        if failure_mode not in (None, "FailOpen", "FailClose"):
            raise ConfigError(f"--failure-mode {failure_mode!r}: FailOpen or FailClose")
        if picked_cluster not in (None, *PICKED_CLUSTERS):
            raise ConfigError(f"--picked-cluster {picked_cluster!r}: one of {', '.join(PICKED_CLUSTERS)}")
        config, notes = build_config(
            manifests, endpoints, pool_name, pool_namespace, epp, epp_tls, listen, admin_port,
            accounting, failure_mode, picked_cluster,
        )  # fmt: skip
    except (ConfigError, EndpointsFileError) as exc:
        typer.echo(f"inferpool envoy-config: {exc}", err=True)
        raise typer.Exit(1) from None
    text = f"# rendered by inferpool envoy-config: {notes[0]}, accounting {accounting}\n" + config.render()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        notes.append(f"wrote {output}; run: envoy -c {output}")
    for note in notes:
        typer.echo(note, err=True)
