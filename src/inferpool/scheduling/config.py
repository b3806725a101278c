"""EndpointPickerConfig: the upstream YAML that names plugins and wires them into profiles.

    apiVersion: inference.networking.x-k8s.io/v1alpha1
    kind: EndpointPickerConfig
    plugins:
    - type: prefix-cache-scorer
      parameters: {hashBlockSize: 64}
    - type: max-score-picker
    schedulingProfiles:
    - name: default
      plugins:
      - pluginRef: prefix-cache-scorer
        weight: 3
      - pluginRef: max-score-picker

Plugins play the role their type implies (filter, scorer or picker); `weight` applies to
scorers only (default 1); a profile without a picker gets `max-score-picker`, as upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from inferpool.admission.flowcontrol.config import (
    FEATURE_GATE,
    BandConfig,
    FairnessPolicy,
    FlowControlConfig,
    OrderingPolicy,
    parse_quantity,
)
from inferpool.durations import parse_go_duration_or_seconds
from inferpool.scheduling.disagg import DisaggScheduler
from inferpool.scheduling.framework import Filter, Picker, Profile, Scheduler, WeightedScorer
from inferpool.scheduling.plugins import PROFILE_KINDS, REGISTRY
from inferpool.scheduling.plugins.approx_prefix import ApproxPrefixProducerParams
from inferpool.scheduling.plugins.max_score import MaxScorePicker
from inferpool.scheduling.plugins.pd_decider import AlwaysDisaggPDDecider, Decider, NonCachedCharsDecider
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheScorer
from inferpool.scheduling.plugins.profile_handler import (
    DisaggProfileHandlerParams,
    HandlerSpec,
    PdProfileHandlerParams,
)

API_VERSIONS = (
    "inference.networking.x-k8s.io/v1alpha1",
    "config.apix.gateway-api-inference-extension.sigs.k8s.io/v1alpha1",
    "llm-d.ai/v1alpha1",  # llm-d-router's EndpointPickerConfig (deploy/config/pd-epp-config.yaml)
)

BUILTIN_PROFILES: tuple[str, ...] = (
    "default",
    "upstream-v1",
    "legacy-v0.3",
    "round-robin",
    "random",
    "least-request",
    "prefix-aware",
    "precise-prefix",
    "precise",
    "flow-control",
    "slo-aware",
    "pd",
    "pd-random-prefill",
)


class ConfigError(ValueError):
    """An EndpointPickerConfig that cannot be used; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid EndpointPickerConfig {source}:\n" + "\n".join(f"  {p}" for p in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PluginSpec(_Model):
    type: str = Field(min_length=1)
    name: str | None = Field(None, min_length=1)
    parameters: dict[str, Any] | None = None

    @property
    def instance_name(self) -> str:
        return self.name or self.type


class ProfilePlugin(_Model):
    plugin_ref: str = Field(alias="pluginRef", min_length=1)
    weight: float | None = Field(None, ge=0)


class SchedulingProfileSpec(_Model):
    name: str = Field(min_length=1)
    plugins: list[ProfilePlugin] = Field(min_length=1)


ByteQuantity = Annotated[int, BeforeValidator(parse_quantity), Field(gt=0)]
Duration = Annotated[float, BeforeValidator(parse_go_duration_or_seconds)]


class BandSpec(_Model):
    """`flowControl.defaultPriorityBand`: the template for priorities not listed in priorityBands."""

    max_bytes: ByteQuantity | None = Field(None, alias="maxBytes")
    max_requests: int | None = Field(None, alias="maxRequests", ge=0)
    fairness_policy_ref: FairnessPolicy | None = Field(None, alias="fairnessPolicyRef")
    ordering_policy_ref: OrderingPolicy | None = Field(None, alias="orderingPolicyRef")

    def to_band(self, template: BandConfig) -> BandConfig:
        return BandConfig(
            max_bytes=template.max_bytes if self.max_bytes is None else self.max_bytes,
            max_requests=template.max_requests if self.max_requests is None else self.max_requests,
            fairness=self.fairness_policy_ref or template.fairness,
            ordering=self.ordering_policy_ref or template.ordering,
        )


class PriorityBandSpec(BandSpec):
    priority: int


class FlowControlSpec(_Model):
    """The upstream `flowControl:` section, plus inferpool's `maxRequests` limits."""

    max_bytes: ByteQuantity | None = Field(None, alias="maxBytes")
    max_requests: int | None = Field(None, alias="maxRequests", ge=0)
    default_request_ttl: Duration | None = Field(None, alias="defaultRequestTTL")
    default_priority_band: BandSpec | None = Field(None, alias="defaultPriorityBand")
    priority_bands: list[PriorityBandSpec] = Field(default_factory=list, alias="priorityBands")

    @field_validator("priority_bands")
    @classmethod
    def _unique_priorities(cls, bands: list[PriorityBandSpec]) -> list[PriorityBandSpec]:
        seen: set[int] = set()
        for band in bands:
            if band.priority in seen:
                raise ValueError(f"priority {band.priority} is listed twice")
            seen.add(band.priority)
        return bands

    def to_config(self) -> FlowControlConfig:
        template = (self.default_priority_band or BandSpec.model_validate({})).to_band(BandConfig())
        return FlowControlConfig(
            max_bytes=self.max_bytes,
            max_requests=self.max_requests,
            default_request_ttl_s=self.default_request_ttl or None,  # 0 means none, as upstream
            default_band=template,
            bands={b.priority: b.to_band(template) for b in self.priority_bands},
        )


class EndpointPickerConfig(_Model):
    api_version: Literal[API_VERSIONS] = Field(alias="apiVersion")  # type: ignore[valid-type]
    kind: Literal["EndpointPickerConfig"]
    plugins: list[PluginSpec] = Field(min_length=1)
    scheduling_profiles: list[SchedulingProfileSpec] = Field(alias="schedulingProfiles", min_length=1)
    feature_gates: list[str] | None = Field(None, alias="featureGates")  # "flowControl" turns it on
    flow_control: FlowControlSpec | None = Field(None, alias="flowControl")  # used only with the gate
    # Upstream sections inferpool configures elsewhere (admission, scraping); accepted, not used here.
    saturation_detector: dict[str, Any] | None = Field(None, alias="saturationDetector")
    data_layer: dict[str, Any] | None = Field(None, alias="dataLayer")
    parser: dict[str, Any] | None = None

    def flow_control_config(self) -> FlowControlConfig | None:
        """Flow control settings when the `flowControl` feature gate is on, else None (as upstream)."""
        if FEATURE_GATE not in (self.feature_gates or []):
            return None
        return (self.flow_control or FlowControlSpec.model_validate({})).to_config()


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _validation_problems(err: ValidationError, prefix: str = "") -> list[str]:
    problems = []
    for e in err.errors():
        loc = _loc(tuple(e["loc"]))
        where = f"{prefix}.{loc}" if prefix and loc != "(document)" else (prefix or loc)
        problems.append(f"{where}: {e['msg']}")
    return problems


def parse_config(text: str, source: str = "<string>") -> EndpointPickerConfig:
    """Parse and validate the YAML text of an EndpointPickerConfig."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(document)"
        raise ConfigError(source, [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(
            source, ["(document): expected a mapping with apiVersion, kind, plugins, schedulingProfiles"]
        )
    try:
        return EndpointPickerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _validation_problems(exc)) from None


def _build_plugins(config: EndpointPickerConfig, problems: list[str]) -> dict[str, tuple[str, object]]:
    built: dict[str, tuple[str, object]] = {}
    prefix_defaults = _producer_prefix_parameters(config)
    for i, spec in enumerate(config.plugins):
        where = f"plugins[{i}]"
        plugin_type = REGISTRY.get(spec.type)
        if plugin_type is None:
            problems.append(
                f"{where}.type: unknown plugin type {spec.type!r}; known: {', '.join(sorted(REGISTRY))}"
            )
            continue
        if spec.instance_name in built:
            problems.append(f"{where}.name: duplicate plugin name {spec.instance_name!r}")
            continue
        parameters = spec.parameters
        if parameters is None and spec.type == "prefix-cache-scorer":
            parameters = prefix_defaults
        try:
            params = plugin_type.params.model_validate(parameters or {})
        except ValidationError as exc:
            problems.extend(_validation_problems(exc, f"{where}.parameters"))
            continue
        built[spec.instance_name] = (plugin_type.kind, plugin_type.build(spec.instance_name, params))
    return built


def _producer_prefix_parameters(config: EndpointPickerConfig) -> dict[str, Any] | None:
    """An llm-d approx-prefix-cache-producer's settings, for prefix-cache-scorers that have none."""
    for spec in config.plugins:
        if spec.type == "approx-prefix-cache-producer":
            try:
                producer = ApproxPrefixProducerParams.model_validate(spec.parameters or {})
            except ValidationError:
                return None  # reported where the producer itself is built
            return producer.prefix_cache_parameters()
    return None


def _build_profile(
    index: int, spec: SchedulingProfileSpec, plugins: dict[str, tuple[str, object]], problems: list[str]
) -> Profile | None:
    filters: list[Filter] = []
    scorers: list[WeightedScorer] = []
    pickers: list[Picker] = []
    start = len(problems)
    for j, ref in enumerate(spec.plugins):
        where = f"schedulingProfiles[{index}].plugins[{j}]"
        found = plugins.get(ref.plugin_ref)
        if found is None:
            problems.append(f"{where}.pluginRef: no plugin named {ref.plugin_ref!r} in plugins")
            continue
        kind, plugin = found
        if kind not in PROFILE_KINDS:
            problems.append(
                f"{where}.pluginRef: {ref.plugin_ref!r} is a {kind}; a profile holds filters, scorers and a picker"
            )
            continue
        if kind != "scorer" and ref.weight is not None:
            problems.append(f"{where}.weight: {ref.plugin_ref!r} is a {kind}; weight applies to scorers only")
        if kind == "scorer":
            scorers.append(WeightedScorer(plugin, 1.0 if ref.weight is None else ref.weight))  # type: ignore[arg-type]
        elif kind == "filter":
            filters.append(plugin)  # type: ignore[arg-type]
        else:
            pickers.append(plugin)  # type: ignore[arg-type]
    if len(pickers) > 1:
        problems.append(f"schedulingProfiles[{index}].plugins: more than one picker ({len(pickers)})")
    if len(problems) > start:
        return None
    return Profile(spec.name, filters, scorers, pickers[0] if pickers else MaxScorePicker())


def build_scheduler(
    config: EndpointPickerConfig, profile: str | None = None, source: str = "<config>"
) -> Scheduler:
    """Instantiate the plugins and return a Scheduler for the config.

    `profile` names the one profile to run; it may be left out when the config has only one,
    or when a profile handler (P/D) says which profiles run: then the result is that handler's
    scheduler. Naming a profile runs that profile alone, handler or not.
    """
    problems: list[str] = []
    plugins = _build_plugins(config, problems)
    names = [p.name for p in config.scheduling_profiles]
    if len(set(names)) != len(names):
        problems.append("schedulingProfiles: profile names must be unique")
    built: dict[str, tuple[int, Profile | None]] = {}
    for i, spec in enumerate(config.scheduling_profiles):
        built.setdefault(spec.name, (i, _build_profile(i, spec, plugins, problems)))
    handlers = [
        (i, plugin)
        for i, plugin in enumerate(config.plugins)
        if plugin.type in REGISTRY and REGISTRY[plugin.type].kind == "profile-handler"
    ]
    if len(handlers) > 1:
        where = ", ".join(f"plugins[{i}]" for i, _ in handlers)
        problems.append(f"plugins: more than one profile handler ({where}); a config has at most one")
    scheduler: Scheduler | None = None
    if handlers and profile is None:
        index, handler_spec = handlers[0]
        handler = plugins.get(handler_spec.instance_name, ("", None))[1]
        if isinstance(handler, DisaggProfileHandlerParams | PdProfileHandlerParams):
            scheduler = _handler_scheduler(index, handler.handler(), built, plugins, problems)
    elif profile is None and len(names) > 1:
        problems.append(
            f"schedulingProfiles: {len(names)} profiles ({', '.join(names)}); say which one to run"
        )
    elif profile is not None and profile not in names:
        problems.append(f"schedulingProfiles: no profile named {profile!r} (have {', '.join(names)})")
    else:
        chosen = built.get(profile if profile is not None else names[0], (0, None))[1]
        scheduler = Scheduler(chosen) if chosen is not None else None
    if problems or scheduler is None:
        raise ConfigError(source, problems or ["schedulingProfiles: no usable profile"])
    return scheduler


def _handler_scheduler(
    index: int,
    handler: HandlerSpec,
    profiles: dict[str, tuple[int, Profile | None]],
    plugins: dict[str, tuple[str, object]],
    problems: list[str],
) -> Scheduler | None:
    """The P/D scheduler a profile handler describes, or None with its problems added."""
    where = f"plugins[{index}].parameters"
    start = len(problems)
    have = ", ".join(profiles) or "none"

    def profile_named(name: str, field: str) -> tuple[int, Profile | None]:
        found = profiles.get(name)
        if found is None:
            problems.append(f"{where}.{field}: no scheduling profile named {name!r} (have {have})")
            return -1, None
        return found

    decode_index, decode = profile_named(handler.decode_profile, handler.decode_field)
    decider: Decider | None = None
    if handler.decider is not None:
        kind, plugin = plugins.get(handler.decider, ("", None))
        if plugin is None:
            problems.append(
                f"{where}.{handler.decider_field}: no plugin named {handler.decider!r} in plugins"
            )
        elif kind != "decider":
            problems.append(
                f"{where}.{handler.decider_field}: {handler.decider!r} is a {kind}, not a P/D decider"
            )
        else:
            decider = plugin  # type: ignore[assignment]
    elif handler.threshold_chars is not None:
        decider = NonCachedCharsDecider(handler.threshold_chars)
    if decider is None:
        # As llm-d: a handler without a prefill decider never splits; the decode profile runs alone.
        return Scheduler(decode) if decode is not None and len(problems) == start else None
    _, prefill = profile_named(handler.prefill_profile, handler.prefill_field)
    prefix = None
    if decode is not None:
        prefix = next((w.scorer for w in decode.scorers if isinstance(w.scorer, PrefixCacheScorer)), None)
        if prefix is None and not isinstance(decider, AlwaysDisaggPDDecider):
            problems.append(
                f"schedulingProfiles[{decode_index}].plugins: the P/D decider {decider.name!r} reads how "
                f"much of the prompt the decode pick has cached; add a prefix-cache-scorer to profile "
                f"{handler.decode_profile!r}"
            )
    if len(problems) > start or decode is None or prefill is None:
        return None
    return DisaggScheduler(decode, prefill, decider, prefix)


def builtin_config_text(name: str) -> str:
    """The YAML of a built-in profile, shipped as package data."""
    if name not in BUILTIN_PROFILES:
        raise ConfigError(
            name, [f"unknown built-in profile {name!r}; built-ins: {', '.join(BUILTIN_PROFILES)}"]
        )
    return resources.files("inferpool.scheduling").joinpath("profiles", f"{name}.yaml").read_text("utf-8")


def load_config(profile_or_path: str | Path | None = None) -> tuple[EndpointPickerConfig, str, bool]:
    """(config, source name, whether it is a built-in) for a built-in profile name (default: "default") or a file."""
    target = "default" if profile_or_path is None else profile_or_path
    if isinstance(target, str) and target in BUILTIN_PROFILES:
        return parse_config(builtin_config_text(target), target), target, True
    path = Path(target)
    if not path.is_file():
        raise ConfigError(
            str(target), [f"not a built-in profile ({', '.join(BUILTIN_PROFILES)}) and not a readable file"]
        )
    source = str(path)
    return parse_config(path.read_text("utf-8"), source), source, False


def builtin_profile(config: EndpointPickerConfig, name: str) -> str | None:
    """The profile a built-in runs: the one of its own name, else its handler's choice (P/D)."""
    return name if any(p.name == name for p in config.scheduling_profiles) else None


@dataclass(frozen=True)
class SchedulerSpec:
    """One parsed, validated EndpointPickerConfig: what a process builds its schedulers from.

    Parsed once; `build()` makes a fresh Scheduler (plugins keep per-pool state, so each pool
    gets its own).
    """

    config: EndpointPickerConfig
    source: str  # built-in profile name or file path, for messages
    profile: str | None  # which of the config's scheduling profiles runs

    @classmethod
    def load(cls, profile_or_path: str | Path | None = None, *, profile: str | None = None) -> SchedulerSpec:
        """Parse a built-in profile name (default "default") or a file; ConfigError lists every problem."""
        config, source, builtin = load_config(profile_or_path)
        spec = cls(config, source, builtin_profile(config, source) if builtin else profile)
        spec.build()  # fail now on plugin and profile problems, not on the first request
        return spec

    def build(self) -> Scheduler:
        return build_scheduler(self.config, self.profile, self.source)

    @property
    def flow_control(self) -> FlowControlConfig | None:
        """Flow control settings (None: the feature gate is off)."""
        return self.config.flow_control_config()


def load_scheduler(profile_or_path: str | Path | None = None, *, profile: str | None = None) -> Scheduler:
    """A Scheduler from a built-in profile name (default: "default") or an EndpointPickerConfig file.

    Raises ConfigError, whose message lists every problem found, never a traceback-only error.
    """
    config, source, builtin = load_config(profile_or_path)
    return build_scheduler(config, builtin_profile(config, source) if builtin else profile, source)


def load_flow_control(profile_or_path: str | Path | None = None) -> FlowControlConfig | None:
    """The flow control settings of the same profile or file (None: the feature gate is off)."""
    return load_config(profile_or_path)[0].flow_control_config()
