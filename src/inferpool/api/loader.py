"""Load what `kubectl apply -f` takes (files, directories, multi-document YAML) into typed resources.

Every problem is reported as `file:line: Kind/name: field: message`, pointing at the
line of the field at fault, so `inferpool validate` reads like a compiler.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from inferpool.api.common import ObjectMeta, Origin, Resource
from inferpool.api.gateway import Gateway, HTTPRoute, Listener
from inferpool.api.gke import HealthCheckPolicy
from inferpool.api.guard import GuardPolicy, pool_attachments, pool_routes
from inferpool.api.inference import (
    LLMD_GROUP,
    InferenceModel,
    InferenceModelRewrite,
    InferenceObjective,
    InferencePool,
    InferencePoolV1,
    InferencePoolV1Alpha2,
)
from inferpool.api.problems import (
    LoadError,
    Problem,
    Severity,
    format_path,
    from_validation_error,
    name_boolean_keys,
)
from inferpool.api.workloads import (
    Ignored,
    Invalid,
    LoRAConfigMap,
    ModelServerDeployment,
    TLSSecret,
    parse_deployment,
    parse_lora_config_map,
    parse_tls_secret,
)
from inferpool.api.yamlpos import Document, Path, YAMLSyntaxError, parse_documents

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class IgnoredObject:
    """A valid object inferpool does not act on (RBAC, ServiceAccount, other Deployments...)."""

    file: str
    line: int
    api_version: str
    kind: str
    name: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}/{self.name or '<unnamed>'}: ignored ({self.reason})"


@dataclass
class ManifestSet:
    """Everything read from a set of manifest files, by kind, with the problems found."""

    pools: list[InferencePool] = field(default_factory=list)
    models: list[InferenceModel] = field(default_factory=list)
    objectives: list[InferenceObjective] = field(default_factory=list)
    rewrites: list[InferenceModelRewrite] = field(default_factory=list)
    gateways: list[Gateway] = field(default_factory=list)
    routes: list[HTTPRoute] = field(default_factory=list)
    health_check_policies: list[HealthCheckPolicy] = field(default_factory=list)
    guard_policies: list[GuardPolicy] = field(default_factory=list)
    deployments: list[ModelServerDeployment] = field(default_factory=list)
    lora_configs: list[LoRAConfigMap] = field(default_factory=list)
    secrets: list[TLSSecret] = field(default_factory=list)
    ignored: list[IgnoredObject] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    warnings: list[LoadError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    documents: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def find_pool(self, name: str, namespace: str = "default") -> InferencePool | None:
        return next((p for p in self.pools if p.name == name and p.namespace == namespace), None)

    def find_gateway(self, name: str, namespace: str = "default") -> Gateway | None:
        return next((g for g in self.gateways if g.name == name and g.namespace == namespace), None)

    def client_model_names(self) -> set[str]:
        """The model names clients may send: InferenceModels' modelName, the names
        InferenceModelRewrites match, model servers' served names and LoRA adapters."""
        names = {m.spec.model_name for m in self.models}
        names.update(m.model.value for r in self.rewrites for rule in r.spec.rules for m in rule.matches)
        for deployment in self.deployments:
            names.update(deployment.served_model_names)
            if deployment.model:
                names.add(deployment.model)
        names.update(a.id for c in self.lora_configs for a in c.config.ensure_exist.models)
        return names

    def find_secret(self, name: str, namespace: str = "default") -> TLSSecret | None:
        return next((s for s in self.secrets if s.name == name and s.namespace == namespace), None)

    def tls_for_listener(self, gateway: Gateway, listener: Listener) -> TLSSecret | None:
        """The certificate and key an HTTPS listener serves: its first certificateRef that resolves."""
        if listener.tls is None:
            return None
        for ref in listener.tls.certificate_refs:
            if ref.kind == "Secret" and ref.group == "":
                secret = self.find_secret(ref.name, ref.namespace or gateway.namespace)
                if secret is not None:
                    return secret
        return None

    def lora_config_for(self, deployment: ModelServerDeployment) -> LoRAConfigMap | None:
        """The vLLMLoRAConfig the Deployment's syncer container mounts, if any."""
        if deployment.lora_config_map is None:
            return None
        for config_map in self.lora_configs:
            if config_map.name == deployment.lora_config_map and config_map.namespace == deployment.namespace:
                if deployment.lora_config_key in (None, config_map.key):
                    return config_map
        return None

    def routes_for(self, gateway: Gateway) -> list[HTTPRoute]:
        return [
            route
            for route in self.routes
            if any(
                ref.kind == "Gateway"
                and ref.name == gateway.name
                and (ref.namespace or route.namespace) == gateway.namespace
                for ref in route.spec.parent_refs
            )
        ]


# -- reading files -------------------------------------------------------------------


def manifest_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[LoadError]]:
    """The files `paths` name: files as given, directories walked recursively (sorted)."""
    files: list[str] = []
    errors: list[LoadError] = []
    for raw in paths:
        path = FsPath(raw)
        if path.is_dir():
            found = sorted(
                str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
            )
            files.extend(found)
        elif path.exists():
            files.append(str(path))
        else:
            errors.append(LoadError(str(path), 0, None, None, None, "no such file or directory"))
    return files, errors


def load_manifests(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> ManifestSet:
    """Read and validate manifests; never raises for bad input (problems land in `.errors`)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files, errors = manifest_files(paths)
    loader = _Loader(ManifestSet(files=files, errors=errors))
    for file in files:
        loader.load_file(file)
    loader.cross_check()
    return loader.result


def load_text(text: str, file: str = "<string>") -> ManifestSet:
    """Load manifests from a string (tests, stdin)."""
    loader = _Loader(ManifestSet(files=[file]))
    loader.load_text(text, file)
    loader.cross_check()
    return loader.result


# -- the loader ---------------------------------------------------------------------


@dataclass
class _Entry:
    """A loaded object with the document it came from (for cross-reference messages)."""

    obj: Any
    kind: str
    doc: Document
    file: str


_Handler = Callable[["_Loader", dict[str, Any], Document, str], None]

_PYDANTIC_KINDS: dict[tuple[str, str], tuple[type[Resource], str]] = {
    ("inference.networking.x-k8s.io/v1alpha2", "InferencePool"): (InferencePoolV1Alpha2, "pools"),
    ("inference.networking.k8s.io/v1", "InferencePool"): (InferencePoolV1, "pools"),
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceModel"): (InferenceModel, "models"),
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceObjective"): (InferenceObjective, "objectives"),
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceModelRewrite"): (InferenceModelRewrite, "rewrites"),
    # Where llm-d-router serves them now; the same models, so both groups are validated alike.
    ("llm-d.ai/v1alpha2", "InferenceObjective"): (InferenceObjective, "objectives"),
    ("llm-d.ai/v1alpha2", "InferenceModelRewrite"): (InferenceModelRewrite, "rewrites"),
    ("gateway.networking.k8s.io/v1", "Gateway"): (Gateway, "gateways"),
    ("gateway.networking.k8s.io/v1beta1", "Gateway"): (Gateway, "gateways"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): (HTTPRoute, "routes"),
    ("gateway.networking.k8s.io/v1beta1", "HTTPRoute"): (HTTPRoute, "routes"),
    ("networking.gke.io/v1", "HealthCheckPolicy"): (HealthCheckPolicy, "health_check_policies"),
    ("inferpool.io/v1alpha1", "GuardPolicy"): (GuardPolicy, "guard_policies"),
}

# Kinds whose other API versions we name in the message instead of a bare "unknown kind".
_KNOWN_KINDS = {kind for _, kind in _PYDANTIC_KINDS}

_IGNORED_REASON = {
    "ServiceAccount": "RBAC is not enforced by inferpool",
    "Role": "RBAC is not enforced by inferpool",
    "ClusterRole": "RBAC is not enforced by inferpool",
    "RoleBinding": "RBAC is not enforced by inferpool",
    "ClusterRoleBinding": "RBAC is not enforced by inferpool",
    "Service": "inferpool reaches pods directly",
    "Namespace": "namespaces are implicit",
    "GCPTrafficExtension": "GKE load-balancer extension; inferpool screens with its own guard",
    "GCPRoutingExtension": "GKE load-balancer extension",
    "GCPBackendPolicy": "GKE load-balancer policy",
    "CustomResourceDefinition": "inferpool has its resource types built in",
    "InferencePoolImport": "multi-cluster pool imports are not used by inferpool",
}


# API groups whose every kind inferpool reads: any other kind there is a typo, not a resource
# for someone else.
_OWN_GROUPS = {"inference.networking.x-k8s.io", "inference.networking.k8s.io", "inferpool.io"}
_KINDS_BY_GROUP: dict[str, set[str]] = {}
for _api_version, _kind in _PYDANTIC_KINDS:
    _KINDS_BY_GROUP.setdefault(_api_version.rpartition("/")[0], set()).add(_kind)


def _unknown_kind(api_version: str, kind: str) -> str | None:
    """The error for a kind that must be a misspelling (kubectl: "no matches for kind"): any
    unknown kind in a group inferpool owns, or one within a letter or two of a kind inferpool
    reads in the same group (Gateway API, GKE, llm-d); None for a kind meant for someone else."""
    group = api_version.rpartition("/")[0]
    known = _KINDS_BY_GROUP.get(group)
    if known is None:
        return None
    close = difflib.get_close_matches(kind, sorted(known), n=1, cutoff=0.85)
    if not close and group not in _OWN_GROUPS:
        return None
    hint = f"; did you mean {close[0]}?" if close else f"; this group has {', '.join(sorted(known))}"
    return f"no kind {kind!r} in {api_version}{hint}"


def _meant_field(kind: str, parent: Path, key: str) -> str | None:
    """The field an author meant by a key YAML read as a boolean, where the docs name it:
    a GuardPolicy check's or webhook's `on:` (docs/security.md: the field is `stages`)."""
    in_stages_object = parent == ("spec", "webhook") or (
        len(parent) == 3 and parent[:2] == ("spec", "checks")
    )
    if kind == "GuardPolicy" and key.lower() == "on" and in_stages_object:
        return "stages"
    return None


def _name_of(data: dict[str, Any]) -> str | None:
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return str(name) if name is not None else None


class _Loader:
    def __init__(self, result: ManifestSet) -> None:
        self.result = result
        self.entries: list[_Entry] = []
        # ConfigMaps whose vLLMLoRAConfig is reported broken: a Deployment naming one is not
        # warned that it is missing as well
        self.broken_lora_configs: set[tuple[str, str]] = set()

    # -- reporting ----------------------------------------------------------
    def report(
        self,
        file: str,
        line: int,
        kind: str | None,
        name: str | None,
        fld: str | None,
        message: str,
        severity: Severity = "error",
    ) -> None:
        error = LoadError(file, line, kind, name, fld, message, severity)
        (self.result.errors if severity == "error" else self.result.warnings).append(error)

    def report_problems(
        self, problems: Iterable[Problem], doc: Document, file: str, kind: str, name: str | None
    ) -> None:
        problems = name_boolean_keys(
            problems, doc.boolean_keys, lambda parent, key: _meant_field(kind, parent, key)
        )
        for problem in problems:
            self.report(
                file,
                doc.line_of(problem.path),
                kind,
                name,
                format_path(problem.path) or None,
                problem.message,
                problem.severity,
            )

    # -- input --------------------------------------------------------------
    def load_file(self, file: str) -> None:
        try:
            text = FsPath(file).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            self.report(file, 1, None, None, None, f"not UTF-8 text: {exc.reason}")
            return
        except OSError as exc:
            self.report(file, 1, None, None, None, f"cannot read: {exc.strerror or exc}")
            return
        self.load_text(text, file)

    def load_text(self, text: str, file: str) -> None:
        try:
            for doc in parse_documents(text):
                try:
                    self.load_document(doc, file)
                except RecursionError:
                    self.report(
                        file, doc.line, None, None, None, "document refers to itself (recursive YAML alias)"
                    )
        except YAMLSyntaxError as exc:
            self.report(file, exc.line, None, None, None, exc.message)

    def load_document(self, doc: Document, file: str) -> None:
        self.result.documents += 1
        data = doc.data
        if not isinstance(data, dict):
            self.report(file, doc.line, None, None, None, "document is not a mapping (a Kubernetes object)")
            return
        api_version, kind = data.get("apiVersion"), data.get("kind")
        name = _name_of(data)
        is_list = isinstance(kind, str) and kind.endswith("List") and isinstance(data.get("items"), list)
        for path, line, first in doc.duplicates:
            if is_list and len(path) > 2 and path[0] == "items":
                continue  # reported with the item it belongs to
            self.report(
                file,
                line,
                kind if isinstance(kind, str) else None,
                name,
                format_path(path),
                f"duplicate key (first on line {first}); the later value would silently replace it",
            )
        for key, value in (("apiVersion", api_version), ("kind", kind)):
            if not isinstance(value, str) or not value:
                self.report(
                    file,
                    doc.line_of((key,)),
                    kind if isinstance(kind, str) else None,
                    name,
                    key,
                    "required field is missing" if value is None else "must be a non-empty string",
                )
        if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
            return
        if kind.endswith("List") and isinstance(data.get("items"), list):
            for index, item in enumerate(data["items"]):
                prefix = ("items", index)
                lines = {path[2:]: line for path, line in doc.lines.items() if path[:2] == prefix}
                duplicates = [
                    (path[2:], line, first) for path, line, first in doc.duplicates if path[:2] == prefix
                ]
                booleans = {path[2:]: key for path, key in doc.boolean_keys.items() if path[:2] == prefix}
                item_doc = Document(item, doc.lines.get(prefix, doc.line), lines, duplicates, booleans)
                self.load_document(item_doc, file)
            return
        target = _PYDANTIC_KINDS.get((api_version, kind))
        if target is not None:
            self.load_resource(target[0], target[1], data, doc, file)
        elif (api_version, kind) == ("apps/v1", "Deployment"):
            self.load_deployment(data, doc, file)
        elif (api_version, kind) == ("v1", "ConfigMap"):
            self.load_config_map(data, doc, file)
        elif (api_version, kind) == ("v1", "Secret"):
            self.load_secret(data, doc, file)
        elif kind in _KNOWN_KINDS:
            self.report(
                file,
                doc.line_of(("apiVersion",)),
                kind,
                name,
                "apiVersion",
                f"unsupported apiVersion {api_version!r} for {kind}",
            )
        elif kind not in _IGNORED_REASON and (unknown := _unknown_kind(api_version, kind)) is not None:
            self.report(file, doc.line_of(("kind",)), kind, name, "kind", unknown)
        else:
            reason = _IGNORED_REASON.get(kind, "kind not used by inferpool")
            self.ignore(file, doc, api_version, kind, name, reason)

    def ignore(
        self, file: str, doc: Document, api_version: str, kind: str, name: str | None, reason: str
    ) -> None:
        self.result.ignored.append(IgnoredObject(file, doc.line, api_version, kind, name, reason))

    # -- typed kinds --------------------------------------------------------
    def load_resource(
        self, model: type[Resource], bucket: str, data: dict[str, Any], doc: Document, file: str
    ) -> None:
        kind, name = str(data["kind"]), _name_of(data)
        try:
            obj = model.model_validate(data)
        except ValidationError as exc:
            self.report_problems(from_validation_error(exc), doc, file, kind, name)
            return
        obj.at(file, doc.line)
        getattr(self.result, bucket).append(obj)
        self.entries.append(_Entry(obj, kind, doc, file))

    def _metadata(self, data: dict[str, Any], doc: Document, file: str) -> ObjectMeta | None:
        try:
            return ObjectMeta.model_validate(data.get("metadata"))
        except ValidationError as exc:
            problems = from_validation_error(exc, prefix=("metadata",))
            self.report_problems(problems, doc, file, str(data["kind"]), _name_of(data))
            return None

    def load_deployment(self, data: dict[str, Any], doc: Document, file: str) -> None:
        meta = self._metadata(data, doc, file)
        if meta is None:
            return
        try:
            deployment, warnings = parse_deployment(data, meta.name, meta.namespace)
        except Ignored as exc:
            self.ignore(file, doc, "apps/v1", "Deployment", meta.name, str(exc))
            return
        except Invalid as exc:
            self.report_problems(exc.problems, doc, file, "Deployment", meta.name)
            return
        self.report_problems(warnings, doc, file, "Deployment", meta.name)
        deployment.origin = Origin(file=file, line=doc.line)
        self.result.deployments.append(deployment)
        self.entries.append(_Entry(deployment, "Deployment", doc, file))

    def load_config_map(self, data: dict[str, Any], doc: Document, file: str) -> None:
        meta = self._metadata(data, doc, file)
        if meta is None:
            return
        parsed = parse_lora_config_map(data, meta.name, meta.namespace, doc.lines)
        if parsed is None:
            self.ignore(file, doc, "v1", "ConfigMap", meta.name, "holds no vLLMLoRAConfig")
            return
        config_map, problems = parsed
        for line, fld, message in problems:
            self.report(file, line, "ConfigMap", meta.name, fld, message)
        if config_map is None:
            self.broken_lora_configs.add((meta.namespace, meta.name))
        if config_map is not None:
            config_map.origin = Origin(file=file, line=doc.line)
            self.result.lora_configs.append(config_map)
            self.entries.append(_Entry(config_map, "ConfigMap", doc, file))

    def load_secret(self, data: dict[str, Any], doc: Document, file: str) -> None:
        meta = self._metadata(data, doc, file)
        if meta is None:
            return
        try:
            secret = parse_tls_secret(data, meta.name, meta.namespace)
        except Ignored as exc:
            self.ignore(file, doc, "v1", "Secret", meta.name, str(exc))
            return
        except Invalid as exc:
            self.report_problems(exc.problems, doc, file, "Secret", meta.name)
            return
        secret.origin = Origin(file=file, line=doc.line)
        self.result.secrets.append(secret)
        self.entries.append(_Entry(secret, "Secret", doc, file))

    # -- cross references ---------------------------------------------------
    def warn(self, entry: _Entry, path: Path, message: str, severity: Severity = "warning") -> None:
        self.report(
            entry.file,
            entry.doc.line_of(path),
            entry.kind,
            entry.obj.name,
            format_path(path),
            message,
            severity,
        )

    def cross_check(self) -> None:
        result = self.result
        seen: dict[tuple[str, str, str, str], _Entry] = {}
        for entry in self.entries:
            group = entry.obj.api_version.split("/")[0] if isinstance(entry.obj, Resource) else ""
            first = seen.setdefault((group, entry.kind, entry.obj.namespace, entry.obj.name), entry)
            if first is not entry:
                self.warn(
                    entry,
                    ("metadata", "name"),
                    f"duplicate {entry.kind} {entry.obj.name!r} (first defined at {first.file}:{first.doc.line})",
                    "error",
                )
        model_names: dict[tuple[str, str, str], _Entry] = {}
        bound: dict[tuple[str, str, str], _Entry] = {}
        for entry in self.entries:
            obj = entry.obj
            if (
                isinstance(obj, InferenceModel)
                and result.find_pool(obj.spec.pool_ref.name, obj.namespace) is None
            ):
                self.warn(
                    entry,
                    ("spec", "poolRef", "name"),
                    f"InferencePool {obj.spec.pool_ref.name!r} not found in namespace {obj.namespace!r}",
                )
            if isinstance(obj, InferenceObjective | InferenceModelRewrite):
                self._check_pool_binding(entry, obj)
                first = bound.setdefault((entry.kind, obj.namespace, obj.name), entry)
                if first is not entry and first.obj.api_version != obj.api_version:
                    self.warn(
                        entry,
                        ("apiVersion",),
                        f"{entry.kind} {obj.name!r} is also defined as {first.obj.api_version} "
                        f"({first.file}:{first.doc.line}); requests name it by name, so the "
                        f"{LLMD_GROUP} one is used",
                    )
            if isinstance(obj, InferenceModel):
                first = model_names.setdefault(
                    (obj.namespace, obj.spec.pool_ref.name, obj.spec.model_name), entry
                )
                if first is not entry:
                    self.warn(
                        entry,
                        ("spec", "modelName"),
                        f"modelName {obj.spec.model_name!r} already served on this pool by InferenceModel "
                        f"{first.obj.name!r} ({first.file}:{first.doc.line}); the first one wins",
                    )
            elif isinstance(obj, HTTPRoute):
                self._check_route(entry, obj)
            elif isinstance(obj, GuardPolicy):
                self._check_guard_policy(entry, obj)
            elif isinstance(obj, HealthCheckPolicy):
                ref = obj.spec.target_ref
                if ref.kind == "InferencePool" and result.find_pool(ref.name, obj.namespace) is None:
                    self.warn(entry, ("spec", "targetRef", "name"), f"InferencePool {ref.name!r} not found")
            elif isinstance(obj, Gateway):
                for index, listener in enumerate(obj.spec.listeners):
                    if listener.tls is not None and result.tls_for_listener(obj, listener) is None:
                        self.warn(
                            entry,
                            ("spec", "listeners", index, "tls", "certificateRefs"),
                            "no kubernetes.io/tls Secret found for this listener",
                        )
            elif isinstance(obj, ModelServerDeployment):
                if (
                    obj.lora_config_map is not None
                    and result.lora_config_for(obj) is None
                    and (obj.namespace, obj.lora_config_map) not in self.broken_lora_configs
                ):
                    self.warn(
                        entry,
                        ("spec", "template", "spec", "volumes"),
                        f"ConfigMap {obj.lora_config_map!r} with a vLLMLoRAConfig not found",
                    )

    def _check_pool_binding(self, entry: _Entry, obj: InferenceObjective | InferenceModelRewrite) -> None:
        """Warn about named pools that are missing and a poolSelector that selects none."""
        spec, namespace = obj.spec, obj.namespace
        named: list[tuple[Path, str]] = []
        if spec.pool_ref is not None:
            named.append((("spec", "poolRef", "name"), spec.pool_ref.name))
        for index, ref in enumerate(spec.pool_refs or []):
            named.append((("spec", "poolRefs", index, "name"), ref.name))
        for path, name in named:
            if self.result.find_pool(name, namespace) is None:
                self.warn(entry, path, f"InferencePool {name!r} not found in namespace {namespace!r}")
        if spec.pool_selector is not None:
            selector = spec.pool_selector.selector()
            pools = [p for p in self.result.pools if p.namespace == namespace]
            if not any(selector.matches(p.metadata.labels) for p in pools):
                self.warn(
                    entry,
                    ("spec", "poolSelector"),
                    f"selects no InferencePool in namespace {namespace!r} (yet: pools added later are bound)",
                )

    def _check_guard_policy(self, entry: _Entry, policy: GuardPolicy) -> None:
        """Warn where the policy would screen nothing: a target not in the manifests, a target
        through which no route leads to a pool (the data planes' own lookup), a model name
        nothing declares."""
        result = self.result
        by_kind: dict[str, Sequence[Resource]] = {
            "Gateway": result.gateways,
            "HTTPRoute": result.routes,
            "InferencePool": result.pools,
        }
        routes = pool_routes(result.routes)
        reached = {
            point
            for pool in result.pools
            for point in pool_attachments(f"{pool.namespace}/{pool.name}", routes)
        }
        for index, (ref, attachment) in enumerate(
            zip(policy.spec.target_refs, policy.attachments(), strict=True)
        ):
            path = ("spec", "targetRefs", index, "name")
            namesakes = {o.namespace for o in by_kind[ref.kind] if o.name == ref.name}
            if policy.namespace not in namesakes:
                hint = (
                    f" (there is one in namespace {min(namesakes)!r}, but a targetRef names an object "
                    "in the policy's own namespace)"
                    if namesakes
                    else ""
                )
                self.warn(
                    entry,
                    path,
                    f"{ref.kind} {ref.name!r} not found in namespace {policy.namespace!r}{hint}; "
                    "this target screens nothing",
                )
            elif attachment not in reached:
                leads = (
                    f"HTTPRoute {ref.name!r} sends no traffic to an InferencePool in the manifests"
                    if ref.kind == "HTTPRoute"
                    else f"no HTTPRoute in the manifests leads from Gateway {ref.name!r} to an InferencePool"
                )
                self.warn(entry, path, f"{leads}, so this target screens no pool's traffic")
        known = result.client_model_names()
        if not known:
            return  # nothing declares model names here, so there is nothing to compare with
        declared_pools = {(m.namespace, m.spec.pool_ref.name) for m in result.models}
        if any((pool.namespace, pool.name) not in declared_pools for pool in result.pools):
            # a pool without InferenceModels passes any name its servers serve, and servers
            # listed by --endpoints or found at run time are not in the manifests
            return
        for index, model in enumerate(policy.spec.models):
            if model not in known:
                close = difflib.get_close_matches(model, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.warn(
                    entry,
                    ("spec", "models", index),
                    f"no InferenceModel, InferenceModelRewrite or model server declares model name "
                    f"{model!r}, so the policy never applies to it{hint}",
                )

    def _check_route(self, entry: _Entry, route: HTTPRoute) -> None:
        for index, ref in enumerate(route.spec.parent_refs):
            if (
                ref.kind == "Gateway"
                and self.result.find_gateway(ref.name, ref.namespace or route.namespace) is None
            ):
                self.warn(entry, ("spec", "parentRefs", index, "name"), f"Gateway {ref.name!r} not found")
        for r, rule in enumerate(route.spec.rules):
            for b, backend in enumerate(rule.backend_refs):
                if not backend.is_inference_pool:
                    continue
                namespace = backend.namespace or route.namespace
                if self.result.find_pool(backend.name, namespace) is None:
                    self.warn(
                        entry,
                        ("spec", "rules", r, "backendRefs", b, "name"),
                        f"InferencePool {backend.name!r} not found in namespace {namespace!r}",
                    )
