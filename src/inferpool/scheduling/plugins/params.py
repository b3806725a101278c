"""Typed plugin parameters: the `parameters:` map of an EndpointPickerConfig plugin entry."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Params(BaseModel):
    """Base for every plugin's parameters: camelCase keys as upstream, unknown keys rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class NoParams(Params):
    """For plugins that take no parameters (any key given is an error)."""
