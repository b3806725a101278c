"""Kubernetes mode: InferencePool, models and pods from the API server's watches."""

from inferpool.sources.kubernetes.reflector import Backoff, Reflector
from inferpool.sources.kubernetes.source import KubernetesConfig, KubernetesSource

__all__ = ["Backoff", "KubernetesConfig", "KubernetesSource", "Reflector"]
