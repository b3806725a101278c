"""Connecting to the API server: in-cluster service account, else kubeconfig."""

from __future__ import annotations

import asyncio
import os

from kubernetes_asyncio import client, config


async def connect(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient for the pod's service account when in a cluster, else for ~/.kube/config (or KUBECONFIG)."""
    configuration = client.Configuration()
    if kubeconfig is not None and not await asyncio.to_thread(os.path.isfile, kubeconfig):
        # the library would read a missing file as an empty config ("Expected key current-context")
        raise ValueError(f"--kubeconfig {kubeconfig}: no such file")
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            await config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (config.ConfigException, OSError) as err:
        raise ValueError(f"no usable Kubernetes configuration (in-cluster or kubeconfig): {err}") from err
    return client.ApiClient(configuration)


def client_for(host: str, token: str | None = None) -> client.ApiClient:
    """An ApiClient for an explicit server URL (tests, `kubectl proxy`)."""
    configuration = client.Configuration(host=host)
    if token:
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)
