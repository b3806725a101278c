"""Data-parallel ranks as llm-d-router maps them: one endpoint per InferencePool target port.

A v1 InferencePool lists up to 8 targetPorts; a pod serving data-parallel vLLM runs one API
server per rank on those ports (vLLM's external load-balancing layout, `--data-parallel-rank`),
and each becomes its own endpoint, named `<pod>-rank-<i>` after the port's position
(llm-d-router's pkg/epp/datastore createEndpointNamespacedName), scraped on its own port.
A pod may narrow the ports it serves with the `llm-d.ai/active-ports` annotation (or the
Inference Extension's older `inference.networking.k8s.io/active-ports`): a comma-separated
list; ports outside the pool's targetPorts are ignored, and the rank index stays the port's
position in targetPorts, so names do not shift when a rank goes inactive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ACTIVE_PORTS_ANNOTATION = "llm-d.ai/active-ports"
LEGACY_ACTIVE_PORTS_ANNOTATION = "inference.networking.k8s.io/active-ports"


def rank_endpoint_name(pod: str, rank: int) -> str:
    """llm-d-router's endpoint name for rank `rank` (the port's index in targetPorts) of `pod`."""
    return f"{pod}-rank-{rank}"


def active_ranks(target_ports: Sequence[int], annotations: Mapping[str, str]) -> list[tuple[int, int]]:
    """(rank, port) for each target port the pod serves: all of them, unless an annotation narrows them.

    As llm-d-router reads it: entries that are not positive integers or not target ports are
    skipped, so an annotation naming none of them leaves the pod with no endpoint.
    """
    listed = annotations.get(ACTIVE_PORTS_ANNOTATION)
    if listed is None:
        listed = annotations.get(LEGACY_ACTIVE_PORTS_ANNOTATION)
    if listed is None:
        return list(enumerate(target_ports))
    active: set[int] = set()
    for entry in listed.split(","):
        entry = entry.strip()
        if entry.isdigit() and int(entry) > 0:
            active.add(int(entry))
    return [(rank, port) for rank, port in enumerate(target_ports) if port in active]
