"""Kubernetes resources inferpool understands, and loading them from manifest files.

`load_manifests` turns what `kubectl apply -f` takes into a typed `ManifestSet`;
`inferpool.sources.convert.to_state` (a layer up: api knows nothing of the datastore) reduces
that to the `inferpool.state` objects the core uses.
"""

from inferpool.api.loader import IgnoredObject, ManifestSet, load_manifests, load_text
from inferpool.api.problems import LoadError

__all__ = ["IgnoredObject", "LoadError", "ManifestSet", "load_manifests", "load_text"]
