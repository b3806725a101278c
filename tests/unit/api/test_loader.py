"""Manifest loading: files and directories, documents, field lines, ignored kinds, unreadable input."""

from __future__ import annotations

import json
from pathlib import Path

from inferpool.api import load_manifests, load_text
from inferpool.api.yamlpos import YAMLSyntaxError, parse_documents

POOL = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata:
  name: {name}
spec:
  selector: {{app: v}}
  targetPortNumber: 8000
  extensionRef: {{name: epp}}
"""


def test_field_lines_and_missing_field_falls_back_to_parent() -> None:
    docs = list(parse_documents("a: 1\nb:\n  c:\n  - x\n  - y: 2\n---\nz: 3\n"))
    assert [d.line for d in docs] == [1, 7]
    lines = docs[0].lines
    assert lines[("b", "c")] == 3 and lines[("b", "c", 1)] == 5 and lines[("b", "c", 1, "y")] == 5
    assert docs[0].line_of(("b", "missing")) == 2
    assert docs[0].line_of(("nothing",)) == 1


def test_syntax_error_keeps_earlier_documents() -> None:
    got = []
    try:
        for doc in parse_documents("a: 1\n---\nb: [\n"):
            got.append(doc.data)
    except YAMLSyntaxError as exc:
        assert exc.line == 4
    else:
        raise AssertionError("no syntax error")
    assert got == [{"a": 1}]


def test_empty_documents_skipped() -> None:
    ms = load_text("---\n---\n" + POOL.format(name="p") + "---\n")
    assert ms.errors == [] and ms.documents == 1 and [p.name for p in ms.pools] == ["p"]


def test_directory_recursive_sorted_and_suffixes(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.yml").write_text(POOL.format(name="z"))
    (tmp_path / "a.yaml").write_text(POOL.format(name="a"))
    (tmp_path / "c.json").write_text(
        json.dumps(
            {
                "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
                "kind": "InferencePool",
                "metadata": {"name": "c"},
                "spec": {"selector": {"app": "v"}, "targetPortNumber": 8000, "extensionRef": {"name": "e"}},
            }
        )
    )
    (tmp_path / "notes.txt").write_text("not: [yaml")
    ms = load_manifests(tmp_path)
    assert ms.errors == []
    assert [p.name for p in ms.pools] == ["a", "z", "c"]  # sorted by path: a.yaml, b/z.yml, c.json
    assert [Path(f).name for f in ms.files] == ["a.yaml", "z.yml", "c.json"]


def test_origin_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("# comment\n" + POOL.format(name="p"))
    pool = load_manifests([path]).pools[0]
    assert pool.origin is not None and (pool.origin.file, pool.origin.line) == (str(path), 2)


def test_list_kind_is_expanded() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        "- " + POOL.format(name=n).replace("\n", "\n  ").rstrip() + "\n" for n in ("a", "b")
    )
    ms = load_text(text.replace("targetPortNumber: 8000\n  kind", "targetPortNumber: 8000\n  kind"))
    assert [p.name for p in ms.pools] == ["a", "b"]
    bad = load_text(text.replace("targetPortNumber: 8000", "targetPortNumber: 0", 1))
    assert [(e.line, e.field) for e in bad.errors] == [(10, "spec.targetPortNumber")]


def test_ignored_kinds_are_listed() -> None:
    text = (
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n"
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
        "spec: {template: {spec: {containers: [{name: nginx, image: nginx}]}}}\n"
    )
    ms = load_text(text)
    assert ms.errors == []
    assert [(i.kind, i.name, i.line) for i in ms.ignored] == [
        ("ServiceAccount", "sa", 1),
        ("Service", "s", 5),
        ("Widget", "w", 9),
        ("ConfigMap", "plain", 13),
        ("Deployment", "web", 18),
    ]
    assert "not a model server" in ms.ignored[-1].reason


def test_known_kind_wrong_version_is_an_error() -> None:
    ms = load_text("apiVersion: gateway.networking.k8s.io/v1alpha9\nkind: Gateway\nmetadata: {name: g}\n")
    assert [(e.field, e.line) for e in ms.errors] == [("apiVersion", 1)]


def test_a_misspelled_kind_is_an_error_a_foreign_one_is_ignored() -> None:
    text = (
        "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModl\nmetadata: {name: m}\n---\n"
        "apiVersion: inferpool.io/v1alpha1\nkind: Widget\nmetadata: {name: w}\n---\n"
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoutes\nmetadata: {name: r}\n---\n"
        # other kinds of the same groups, meant for someone else
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\n---\n"
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: c}\n---\n"
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: InferencePoolImport\nmetadata: {name: i}\n"
    )
    ms = load_text(text)
    assert [(e.line, e.kind, e.field) for e in ms.errors] == [
        (2, "InferenceModl", "kind"),
        (6, "Widget", "kind"),
        (10, "HTTPRoutes", "kind"),
    ]
    assert "did you mean InferenceModel?" in ms.errors[0].message
    assert "GuardPolicy" in ms.errors[1].message  # what the group has
    assert "did you mean HTTPRoute?" in ms.errors[2].message
    assert [i.kind for i in ms.ignored] == ["GRPCRoute", "GatewayClass", "InferencePoolImport"]


def test_a_duplicate_key_is_an_error_naming_both_lines() -> None:
    text = POOL.format(name="p").replace(
        "targetPortNumber: 8000\n", "targetPortNumber: 8000\n  targetPortNumber: 9000\n"
    )
    ms = load_text(text)
    assert [(e.line, e.field) for e in ms.errors] == [(8, "spec.targetPortNumber")]
    assert "first on line 7" in ms.errors[0].message
    # a key merged in with `<<` and set again is an override, not a duplicate
    merged = "x: &base {app: v, tier: a}\n" + POOL.format(name="q").replace(
        "selector: {app: v}", "selector: {<<: *base, tier: b}"
    )
    assert load_text(merged).errors == []
    # in a List, reported with the item and its lines
    items = "apiVersion: v1\nkind: List\nitems:\n- " + text.replace("\n", "\n  ").rstrip() + "\n"
    assert [(e.line, e.field) for e in load_text(items).errors] == [(11, "spec.targetPortNumber")]


def test_a_key_yaml_reads_as_a_boolean_is_named_as_written() -> None:
    """YAML 1.1 reads a bare `on`/`yes`/`off` as a boolean; pydantic then says only "Keys should
    be strings" at `[1]`. The error names the key as written, at its own line."""
    text = POOL.format(name="p").replace("metadata:\n", "metadata:\n  labels: {yes: a}\n")
    text = text.replace("  targetPortNumber: 8000\n", "  targetPortNumber: 8000\n  off: 1\n")
    ms = load_text(text)
    assert [(e.line, e.field, e.message) for e in ms.errors] == [
        (4, "metadata.labels.yes", "`yes` is read by YAML as the boolean true, not as the key 'yes'; "
                                   "quote it ('yes') if that key is meant"),
        (9, "spec.off", "`off` is read by YAML as the boolean false, not as the key 'off'; "
                        "quote it ('off') if that key is meant"),
    ]  # fmt: skip
    assert (
        load_text(text.replace("yes:", "'yes':").replace("off:", "'off':")).errors[0].message
        == "unknown field"
    )
    # in a List, with the item's lines
    items = "apiVersion: v1\nkind: List\nitems:\n- " + text.replace("\n", "\n  ").rstrip() + "\n"
    assert [(e.line, e.field) for e in load_text(items).errors] == [
        (7, "metadata.labels.yes"),
        (12, "spec.off"),
    ]


def test_an_object_given_as_null_must_be_a_mapping() -> None:
    ms = load_text("apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModel\nmetadata:\n"
                   "spec: {modelName: x, poolRef: {name: p}}\n")  # fmt: skip
    assert [(e.line, e.field, e.message) for e in ms.errors] == [(3, "metadata", "must be a mapping")]


def test_missing_api_version_and_kind() -> None:
    ms = load_text("metadata: {name: x}\n")
    assert sorted(e.field or "" for e in ms.errors) == ["apiVersion", "kind"]
    assert str(load_text("- a\n").errors[0]) == "<string>:1: document is not a mapping (a Kubernetes object)"


def test_unreadable_inputs(tmp_path: Path) -> None:
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    missing = tmp_path / "missing.yaml"
    ms = load_manifests([tmp_path / "bin.yaml", missing])
    messages = sorted(str(e) for e in ms.errors)
    assert messages == [
        f"{tmp_path}/bin.yaml:1: not UTF-8 text: invalid start byte",
        f"{missing}: no such file or directory",
    ]


def test_error_string_format() -> None:
    ms = load_text(POOL.format(name="p").replace("8000", "0"), file="pool.yaml")
    assert [str(e) for e in ms.errors] == [
        "pool.yaml:7: InferencePool/p: spec.targetPortNumber: should be greater than or equal to 1"
    ]


def test_duplicate_object_is_an_error() -> None:
    ms = load_text(POOL.format(name="p") + "---\n" + POOL.format(name="p"))
    assert [(e.line, e.field) for e in ms.errors] == [(13, "metadata.name")]
    # the same name under the other API group is a different object
    v1 = (
        "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: p}\n"
        "spec: {selector: {matchLabels: {a: b}}, targetPorts: [{number: 1}], endpointPickerRef: {name: e, port: {number: 9002}}}\n"
    )
    assert load_text(POOL.format(name="p") + "---\n" + v1).errors == []


def test_namespaces_scope_references() -> None:
    model = (
        "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModel\n"
        "metadata: {name: m, namespace: other}\nspec: {modelName: m, poolRef: {name: p}}\n"
    )
    ms = load_text(POOL.format(name="p") + "---\n" + model)
    assert [w.field for w in ms.warnings] == ["spec.poolRef.name"]
    assert ms.find_pool("p") is not None and ms.find_pool("p", "other") is None
