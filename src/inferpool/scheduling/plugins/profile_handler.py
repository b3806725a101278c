"""disagg-profile-handler and pd-profile-handler: llm-d's P/D profile handlers, as configured.

These plugins hold settings only: which scheduling profiles decode and prefill, and which
decider plugin splits a request. The config builder (scheduling/config.py) resolves the names
and builds a `DisaggScheduler` (scheduling/disagg.py) from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from inferpool.scheduling.plugins.params import Params

DEFAULT_DECODE_PROFILE = "decode"
DEFAULT_PREFILL_PROFILE = "prefill"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DisaggProfiles(_Section):
    decode: str = Field(DEFAULT_DECODE_PROFILE, min_length=1)
    prefill: str = Field(DEFAULT_PREFILL_PROFILE, min_length=1)
    encode: str = Field("encode", min_length=1)  # llm-d's E/P/D stage; named, never run here


class DisaggDeciders(_Section):
    prefill: str | None = Field(None, min_length=1)
    encode: str | None = None

    @field_validator("encode")
    @classmethod
    def _no_encode_stage(cls, value: str | None) -> None:
        if value is not None:  # llm-d's E/P/D stage for multimodal encoders is not modelled
            raise ValueError("encode disaggregation (llm-d's E/P/D) is not supported; leave it out")
        return None


class DisaggProfileHandlerParams(Params):
    """`disagg-profile-handler` parameters, plus the flat names llm-d still accepts."""

    profiles: DisaggProfiles = Field(default_factory=lambda: DisaggProfiles.model_validate({}))
    deciders: DisaggDeciders = Field(default_factory=lambda: DisaggDeciders.model_validate({}))
    stage_order: Literal["decode-first"] = "decode-first"  # llm-d's prefill-first is not supported
    decode_profile: str | None = Field(None, min_length=1)
    prefill_profile: str | None = Field(None, min_length=1)
    prefill_decider_plugin_name: str | None = Field(None, min_length=1)
    decider_plugin_name: str | None = Field(None, min_length=1)

    def handler(self) -> HandlerSpec:
        decode, decode_field = self.profiles.decode, "profiles.decode"
        if self.decode_profile is not None:
            decode, decode_field = self.decode_profile, "decodeProfile"
        prefill, prefill_field = self.profiles.prefill, "profiles.prefill"
        if self.prefill_profile is not None:
            prefill, prefill_field = self.prefill_profile, "prefillProfile"
        decider, decider_field = self.deciders.prefill, "deciders.prefill"
        for legacy, name in (
            ("prefillDeciderPluginName", self.prefill_decider_plugin_name),
            ("deciderPluginName", self.decider_plugin_name),
        ):
            if decider is None and name is not None:
                decider, decider_field = name, legacy
        return HandlerSpec(decode, decode_field, prefill, prefill_field, decider, decider_field, None)


class PdProfileHandlerParams(Params):
    """llm-d's deprecated `pd-profile-handler`, old and new parameters.

    `threshold` is its first form: split when the prompt's non-cached length, in characters,
    is at least this. The prefix and port settings configured llm-d's own prefix plugin and
    sidecar port; inferpool's prefix-cache-scorer takes its own parameters, so they are
    accepted and not used.
    """

    decode_profile: str = Field(DEFAULT_DECODE_PROFILE, min_length=1)
    prefill_profile: str = Field(DEFAULT_PREFILL_PROFILE, min_length=1)
    decider_plugin_name: str | None = Field(None, min_length=1)
    threshold: int | None = Field(None, ge=0)
    hash_block_size: int | None = Field(None, gt=0)
    prefix_plugin_type: str | None = None
    prefix_plugin_name: str | None = None
    prefix_match_info_producer_name: str | None = None
    primary_port: int | None = Field(None, ge=0, le=65535)

    def handler(self) -> HandlerSpec:
        decider = self.decider_plugin_name
        if decider is None and self.threshold is None:
            decider = "prefix-based-pd-decider"  # llm-d's default for this handler
        return HandlerSpec(
            self.decode_profile,
            "decodeProfile",
            self.prefill_profile,
            "prefillProfile",
            decider,
            "deciderPluginName",
            self.threshold if decider is None else None,
        )


@dataclass(frozen=True)
class HandlerSpec:
    """A profile handler's settings, whichever spelling they came in; `*_field` names them in errors."""

    decode_profile: str
    decode_field: str
    prefill_profile: str
    prefill_field: str
    decider: str | None  # plugin name of the prefill decider; None: no named decider
    decider_field: str
    threshold_chars: int | None  # the old pd-profile-handler's own decision, when no decider is named
