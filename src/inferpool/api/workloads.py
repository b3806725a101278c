"""Core Kubernetes objects inferpool reads for local runs: the vLLM Deployment, the LoRA
ConfigMap and TLS Secrets. They are parsed leniently (a Deployment has hundreds of
fields we never look at) into small typed records of just what `inferpool up` needs."""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from inferpool.api.common import Origin
from inferpool.api.lora_config import ROOT_KEY, LoRAAdapterConfig, parse_lora_config
from inferpool.api.problems import Problem, format_path, from_validation_error
from inferpool.api.yamlpos import Path, YAMLSyntaxError, parse_documents

LORA_ENV = "DYNAMIC_LORA_ROLLOUT_CONFIG"
VLLM_DEFAULT_PORT = 8000


@dataclass
class ModelServerDeployment:
    """A Deployment running vLLM: what a simulated replica set must look like."""

    name: str
    namespace: str
    replicas: int
    labels: dict[str, str]  # pod template labels (what a pool selector matches)
    container: str
    image: str
    model: str | None
    served_model_names: list[str]
    port: int
    enable_lora: bool = False
    max_loras: int = 1
    max_cpu_loras: int | None = None
    lora_config_map: str | None = None  # ConfigMap holding the vLLMLoRAConfig
    lora_config_key: str | None = None  # key of that ConfigMap the syncer reads
    readiness_path: str | None = None
    args: list[str] = field(default_factory=list)
    origin: Origin | None = None

    @property
    def served_model_name(self) -> str | None:
        """The name clients use for the base model (vLLM: first --served-model-name, else --model)."""
        return self.served_model_names[0] if self.served_model_names else self.model


@dataclass
class LoRAConfigMap:
    """A ConfigMap whose data holds a vLLMLoRAConfig document."""

    name: str
    namespace: str
    key: str
    config: LoRAAdapterConfig
    origin: Origin | None = None


@dataclass
class TLSSecret:
    """A kubernetes.io/tls Secret: PEM certificate chain and private key."""

    name: str
    namespace: str
    cert_pem: str
    key_pem: str
    origin: Origin | None = None


class Ignored(Exception):
    """The object is valid but not one inferpool acts on; the message says why."""


class Invalid(Exception):
    """The object has problems; each names the field at fault."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


# -- Deployment -------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _tokens(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """command + args as argv, with $(VAR) expanded and `sh -c "..."` strings split."""
    tokens: list[str] = []
    for raw in _as_list(container.get("command")) + _as_list(container.get("args")):
        text = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), str(raw))
        if any(ch.isspace() for ch in text.strip()):
            try:
                tokens.extend(shlex.split(text))
            except ValueError:
                tokens.extend(text.split())
        else:
            tokens.append(text)
    return tokens


def _is_vllm(container: dict[str, Any], tokens: list[str]) -> bool:
    if "vllm" in str(container.get("image", "")).lower():
        return True
    joined = " ".join(tokens)
    return "vllm.entrypoints" in joined or bool(re.search(r"(^|[\s/])vllm serve\b", joined))


def _flags(tokens: list[str]) -> tuple[dict[str, list[str]], str | None]:
    """vLLM-style flags (`--max-loras 2`, `--max_loras=2`, bare booleans) and `vllm serve MODEL`."""
    flags: dict[str, list[str]] = {}
    positional: str | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            name = name.replace("_", "-")
            values: list[str] = []
            if eq:
                values.append(value)
            else:
                while i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                    values.append(tokens[i + 1])
                    i += 1
            flags.setdefault(name, []).extend(values)
        elif token == "serve" and i > 0 and tokens[i - 1].endswith("vllm"):
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                positional = tokens[i + 1]
                i += 1
        i += 1
    return flags, positional


def _int_flag(
    flags: dict[str, list[str]], name: str, path: Path, problems: list[Problem], minimum: int
) -> int | None:
    values = flags.get(name)
    if not values:
        return None
    try:
        number = int(values[0])
    except ValueError:
        problems.append(Problem(path, f"--{name} must be an integer, got {values[0]!r}"))
        return None
    if number < minimum:
        problems.append(Problem(path, f"--{name} must be at least {minimum}, got {number}"))
        return None
    return number


def _lora_config_volume(
    pod: dict[str, Any], base: Path, problems: list[Problem]
) -> tuple[str | None, str | None]:
    """The ConfigMap (and key) mounted by the container that has DYNAMIC_LORA_ROLLOUT_CONFIG."""
    volumes = {v.get("name"): v for v in _as_list(pod.get("volumes")) if isinstance(v, dict)}
    for group in ("initContainers", "containers"):
        for index, container in enumerate(_as_list(pod.get(group))):
            container = _as_dict(container)
            env = {
                e.get("name"): e.get("value") for e in _as_list(container.get("env")) if isinstance(e, dict)
            }
            config_path = env.get(LORA_ENV)
            if not config_path:
                continue
            mounts = [_as_dict(m) for m in _as_list(container.get("volumeMounts"))]
            mounts.sort(key=lambda m: -len(str(m.get("mountPath", ""))))
            for mount in mounts:
                mount_path = str(mount.get("mountPath", "")).rstrip("/")
                if not str(config_path).startswith(mount_path + "/"):
                    continue
                volume = volumes.get(mount.get("name"))
                config_map = _as_dict(_as_dict(volume).get("configMap"))
                if not config_map.get("name"):
                    problems.append(
                        Problem(
                            (*base, group, index, "volumeMounts"),
                            f"volume {mount.get('name')!r} holding {LORA_ENV}={config_path} is not a configMap volume",
                        )
                    )
                    return None, None
                return str(config_map["name"]), str(config_path)[len(mount_path) + 1 :]
            problems.append(
                Problem(
                    (*base, group, index, "env"),
                    f"{LORA_ENV}={config_path} is not under any volumeMount of this container",
                )
            )
    return None, None


def parse_deployment(
    data: dict[str, Any], name: str, namespace: str
) -> tuple[ModelServerDeployment, list[Problem]]:
    """A vLLM Deployment and its warnings; raises Ignored for other workloads, Invalid on errors."""
    spec = _as_dict(data.get("spec"))
    template = _as_dict(spec.get("template"))
    pod = _as_dict(template.get("spec"))
    labels = {str(k): str(v) for k, v in _as_dict(_as_dict(template.get("metadata")).get("labels")).items()}
    problems: list[Problem] = []

    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        problems.append(Problem(("spec", "replicas"), "must be a non-negative integer"))
        replicas = 1
    selector = _as_dict(_as_dict(spec.get("selector")).get("matchLabels"))
    for key, value in selector.items():
        if labels.get(str(key)) != str(value):
            problems.append(
                Problem(
                    ("spec", "selector", "matchLabels", str(key)),
                    "selector does not match template labels",
                )
            )

    chosen: tuple[int, dict[str, Any], list[str]] | None = None
    for index, container in enumerate(_as_list(pod.get("containers"))):
        container = _as_dict(container)
        env = {
            str(e.get("name")): str(e["value"])
            for e in _as_list(container.get("env"))
            if isinstance(e, dict) and "value" in e
        }
        tokens = _tokens(container, env)
        if _is_vllm(container, tokens):
            chosen = (index, container, tokens)
            break
    if chosen is None:
        raise Ignored("no vLLM container (not a model server inferpool simulates)")
    index, container, tokens = chosen
    base: Path = ("spec", "template", "spec")
    cpath: Path = (*base, "containers", index)
    env = {
        str(e.get("name")): str(e["value"])
        for e in _as_list(container.get("env"))
        if isinstance(e, dict) and "value" in e
    }
    flags, positional = _flags(tokens)
    args_path: Path = (*cpath, "args") if "args" in container else (*cpath, "command")

    model = next(iter(flags.get("model", [])), None) or positional
    if model is None:
        problems.append(
            Problem(args_path, "vLLM container names no model (--model or `vllm serve MODEL`)", "warning")
        )

    port = _int_flag(flags, "port", args_path, problems, 1)
    if port is None and env.get("PORT", "").isdigit():
        port = int(env["PORT"])
    if port is None:
        container_ports = [_as_dict(p).get("containerPort") for p in _as_list(container.get("ports"))]
        port = next((p for p in container_ports if isinstance(p, int)), VLLM_DEFAULT_PORT)
    if not 1 <= port <= 65535:
        problems.append(Problem(args_path, f"port {port} is out of range 1..65535"))

    max_loras = _int_flag(flags, "max-loras", args_path, problems, 1) or 1
    max_cpu_loras = _int_flag(flags, "max-cpu-loras", args_path, problems, 1)
    if max_cpu_loras is not None and max_cpu_loras < max_loras:
        problems.append(
            Problem(args_path, f"--max-cpu-loras ({max_cpu_loras}) must be >= --max-loras ({max_loras})")
        )

    config_map, config_key = _lora_config_volume(pod, base, problems)
    probe = _as_dict(_as_dict(container.get("readinessProbe")).get("httpGet"))
    if any(p.severity == "error" for p in problems):
        raise Invalid(problems)
    deployment = ModelServerDeployment(
        name=name,
        namespace=namespace,
        replicas=replicas,
        labels=labels,
        container=str(container.get("name", "")),
        image=str(container.get("image", "")),
        model=model,
        served_model_names=flags.get("served-model-name", []),
        port=port,
        enable_lora="enable-lora" in flags and (flags["enable-lora"] or ["true"])[0].lower() != "false",
        max_loras=max_loras,
        max_cpu_loras=max_cpu_loras,
        lora_config_map=config_map,
        lora_config_key=config_key,
        readiness_path=str(probe["path"]) if probe.get("path") else None,
        args=tokens,
    )
    return deployment, problems  # only warnings are left here


# -- ConfigMap ----------------------------------------------------------------------


def parse_lora_config_map(
    data: dict[str, Any], name: str, namespace: str, lines: dict[Path, int]
) -> tuple[LoRAConfigMap | None, list[tuple[int, str, str]]] | None:
    """The vLLMLoRAConfig inside a ConfigMap, or None if it holds none.

    Problems come back as (line, field, message): the embedded YAML has its own lines,
    which we map back to the file (a `|` block starts on the line after its key).
    """
    for key, value in _as_dict(data.get("data")).items():
        if not isinstance(value, str) or ROOT_KEY not in value:
            continue
        key_line = lines.get(("data", str(key)), 0)
        first = key_line + 1 if "\n" in value else key_line
        field_prefix = f"data[{key}]"
        try:
            docs = list(parse_documents(value, first_line=first))
        except YAMLSyntaxError as exc:
            return None, [(exc.line, field_prefix, exc.message)]
        doc = next((d for d in docs if isinstance(d.data, dict) and ROOT_KEY in d.data), None)
        if doc is None:
            continue
        duplicates = [
            (line, f"{field_prefix}.{format_path(path)}", f"duplicate key (first on line {first}); "
             "the later value would silently replace it")
            for path, line, first in doc.duplicates
        ]  # fmt: skip
        try:
            config = parse_lora_config(doc.data)
        except ValidationError as exc:
            out = []
            for problem in from_validation_error(exc, prefix=(ROOT_KEY,)):
                out.append(
                    (
                        doc.line_of(problem.path),
                        f"{field_prefix}.{format_path(problem.path)}",
                        problem.message,
                    )
                )
            return None, out
        except ValueError as exc:
            return None, [(key_line, field_prefix, str(exc))]
        return LoRAConfigMap(name=name, namespace=namespace, key=str(key), config=config), duplicates
    return None


# -- Secret -------------------------------------------------------------------------


def parse_tls_secret(data: dict[str, Any], name: str, namespace: str) -> TLSSecret:
    """A kubernetes.io/tls Secret; raises Ignored for other Secret types, Invalid on errors."""
    secret_type = data.get("type", "Opaque")
    if secret_type != "kubernetes.io/tls":
        raise Ignored(f"Secret type {secret_type} is not used by inferpool")
    values: dict[str, str] = {}
    problems: list[Problem] = []
    for key, raw in _as_dict(data.get("data")).items():
        try:
            values[str(key)] = base64.b64decode(str(raw), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            problems.append(Problem(("data", str(key)), "not valid base64-encoded text"))
    for key, raw in _as_dict(data.get("stringData")).items():
        values[str(key)] = str(raw)
    for key in ("tls.crt", "tls.key"):
        if key not in values and not any(p.path == ("data", key) for p in problems):
            problems.append(Problem(("data", key), f"a kubernetes.io/tls Secret needs {key}"))
    if problems:
        raise Invalid(problems)
    if "-----BEGIN" not in values["tls.crt"]:
        problems.append(Problem(("data", "tls.crt"), "not a PEM certificate"))
    if "-----BEGIN" not in values["tls.key"]:
        problems.append(Problem(("data", "tls.key"), "not a PEM private key"))
    if problems:
        raise Invalid(problems)
    return TLSSecret(name=name, namespace=namespace, cert_pem=values["tls.crt"], key_pem=values["tls.key"])
