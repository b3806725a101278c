"""The `vLLMLoRAConfig` document of the upstream lora-syncer: which adapters a vLLM server must have.

It lives in a ConfigMap that the syncer sidecar mounts; `inferpool lora-syncer` reads the
same file, so the model here is shared by the manifest loader and the syncer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inferpool.api.common import PortNumber


class _Base(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class LoRAAdapter(_Base):
    id: Annotated[str, Field(min_length=1)]
    source: Annotated[str, Field(min_length=1)]
    base_model: str | None = Field(default=None, alias="base-model")


class AdapterList(_Base):
    models: list[LoRAAdapter] = Field(default_factory=list)


class LoRAAdapterConfig(_Base):
    name: str = ""
    host: str = "localhost"
    port: PortNumber = 8000
    default_base_model: str | None = Field(default=None, alias="defaultBaseModel")
    ensure_exist: AdapterList = Field(default_factory=AdapterList, alias="ensureExist")
    ensure_not_exist: AdapterList = Field(default_factory=AdapterList, alias="ensureNotExist")

    @model_validator(mode="after")
    def _disjoint(self) -> LoRAAdapterConfig:
        wanted = {a.id for a in self.ensure_exist.models}
        both = sorted(wanted & {a.id for a in self.ensure_not_exist.models})
        if both:
            raise ValueError(f"adapter(s) {', '.join(both)} listed in both ensureExist and ensureNotExist")
        ids = [a.id for a in self.ensure_exist.models]
        if len(set(ids)) != len(ids):
            raise ValueError("adapter ids in ensureExist must be unique")
        return self

    def base_model_of(self, adapter: LoRAAdapter) -> str | None:
        return adapter.base_model or self.default_base_model


class LoRAConfigError(ValueError):
    """The config file is unreadable or not a valid vLLMLoRAConfig document."""


ROOT_KEY = "vLLMLoRAConfig"


def parse_lora_config(data: Any) -> LoRAAdapterConfig:
    """Validate an already-parsed document `{vLLMLoRAConfig: {...}}`; raises ValidationError or ValueError."""
    if not isinstance(data, dict) or ROOT_KEY not in data:
        raise ValueError(f"document has no top-level {ROOT_KEY!r} key")
    return LoRAAdapterConfig.model_validate(data[ROOT_KEY] or {})


def load_lora_config(path: str | Path) -> LoRAAdapterConfig:
    """Read a vLLMLoRAConfig file (the syncer's mounted ConfigMap key)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise LoRAConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise LoRAConfigError(f"{path}: YAML syntax error: {exc}") from exc
    try:
        return parse_lora_config(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or ROOT_KEY}: {err['msg']}" for err in exc.errors()
        )
        raise LoRAConfigError(f"{path}: {problems}") from exc
    except ValueError as exc:
        raise LoRAConfigError(f"{path}: {exc}") from exc
