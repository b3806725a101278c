"""One request's lifecycle: body parsing, model resolution, dispatch and usage accounting.

The public names load lazily so that `inferpool.request.errors` (used by every layer,
admission included) can be imported without pulling in the Director and its imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inferpool.request.director import CandidateScore as CandidateScore
    from inferpool.request.director import Director as Director
    from inferpool.request.director import DirectorConfig as DirectorConfig
    from inferpool.request.director import ModelInfo as ModelInfo
    from inferpool.request.director import RequestRecord as RequestRecord
    from inferpool.request.director import RoutedRequest as RoutedRequest
    from inferpool.request.director import Scheduler as Scheduler
    from inferpool.request.errors import InferenceError as InferenceError

_EXPORTS = {
    "CandidateScore": "inferpool.request.director",
    "Director": "inferpool.request.director",
    "DirectorConfig": "inferpool.request.director",
    "ModelInfo": "inferpool.request.director",
    "RequestRecord": "inferpool.request.director",
    "RoutedRequest": "inferpool.request.director",
    "Scheduler": "inferpool.request.director",
    "InferenceError": "inferpool.request.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inferpool.request' has no attribute {name!r}")
    return getattr(import_module(module), name)
