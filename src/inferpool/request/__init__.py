"""One request's lifecycle: body parsing, model resolution, dispatch and usage accounting."""

from inferpool.request.director import (
    CandidateScore,
    Director,
    DirectorConfig,
    ModelInfo,
    RequestRecord,
    RoutedRequest,
    Scheduler,
)

__all__ = [
    "CandidateScore",
    "Director",
    "DirectorConfig",
    "ModelInfo",
    "RequestRecord",
    "RoutedRequest",
    "Scheduler",
]
