"""GuardPolicy manifests: validation names the field, attachment picks the most specific target."""

from __future__ import annotations

from inferpool.api.loader import load_text
from inferpool.guard.attach import GuardSet, to_config
from inferpool.guard.policy import Action, Stage

DOC = """
apiVersion: inferpool.io/v1alpha1
kind: GuardPolicy
metadata: {name: %s}
spec:
  targetRefs: [{kind: %s, name: %s}]
  %s
  checks: [%s]
"""


def policy(name: str, kind: str, target: str, checks: str, models: str = "") -> str:
    return DOC % (name, kind, target, models, checks)


def test_conversion_and_defaults() -> None:
    m = load_text(
        policy("p", "Gateway", "gw", "{type: PII, action: Redact, piiTypes: [Email, IBAN]}, {type: Secrets}")
        + "  webhook: {url: 'http://127.0.0.1:1/s', timeoutMs: 250, failurePolicy: FailOpen}\n"
    )
    assert m.ok, m.errors
    cfg = to_config(m.guard_policies[0])
    pii, secrets = cfg.checks
    assert (pii.check, pii.action, pii.pii_types) == ("pii", Action.REDACT, ("email", "iban"))
    assert secrets.action is Action.BLOCK and secrets.stages == {Stage.PROMPT, Stage.RESPONSE}
    assert cfg.hook is not None and cfg.hook.timeout_s == 0.25 and cfg.hook.fail_open
    assert cfg.hook.stages == {Stage.PROMPT}


def test_validation_errors_name_the_field() -> None:
    bad = load_text(
        policy("p", "Gateway", "gw", "{type: DenyList, action: Block}, {type: Secrets, action: Drop}")
    )
    assert not bad.ok
    fields = {e.field for e in bad.errors}
    assert any(f and f.startswith("spec.checks[0]") for f in fields), bad.errors
    assert any(f and f.startswith("spec.checks[1].action") for f in fields), bad.errors
    wrong_kind = load_text(policy("p", "Service", "svc", "{type: Secrets}"))
    assert not wrong_kind.ok


def test_detector_knobs_reach_the_checks() -> None:
    m = load_text(
        policy(
            "p",
            "Gateway",
            "gw",
            "{type: PII, piiTypes: [Phone, InAadhaar, GbNINO], phoneRegions: [gb, IN]},"
            " {type: Secrets, base64EntropyLimit: 5.0, hexEntropyLimit: 0},"
            " {type: PromptInjection, threshold: 0.7, toolThreshold: 0.6}",
        )
    )
    assert m.ok, m.errors
    pii, secrets, injection = to_config(m.guard_policies[0]).checks
    assert pii.pii_types == ("phone", "in_aadhaar", "gb_nino") and pii.phone_regions == ("GB", "IN")
    assert (secrets.base64_entropy_limit, secrets.hex_entropy_limit) == (5.0, 0.0)
    assert injection.threshold == 0.7 and injection.tool_threshold == 0.6
    plain = load_text(policy("p", "Gateway", "gw", "{type: PII}, {type: Secrets}, {type: PromptInjection}"))
    pii, secrets, injection = to_config(plain.guard_policies[0]).checks
    assert pii.phone_regions == ("US",) and secrets.base64_entropy_limit == 4.5 and injection.threshold == 0.5


def test_detector_knob_errors_name_the_field() -> None:
    cases = {
        "{type: PII, threshold: 0.5}": ("spec.checks[0]", "threshold is only valid for type PromptInjection"),
        "{type: Secrets, toolThreshold: 0.6}": (
            "spec.checks[0]",
            "toolThreshold is only valid for type PromptInjection",
        ),
        "{type: PromptInjection, toolThreshold: 1.5}": ("spec.checks[0].toolThreshold", "1"),
        "{type: PII, phoneRegions: [XX]}": ("spec.checks[0].phoneRegions", "unknown phone regions ['XX']"),
        "{type: Secrets, base64EntropyLimit: 9}": ("spec.checks[0].base64EntropyLimit", "8"),
        "{type: PromptInjection, threshold: 0}": ("spec.checks[0].threshold", "0"),
        "{type: Secrets, phoneRegions: [US]}": ("spec.checks[0]", "phoneRegions is only valid for type PII"),
        "{type: PII, piiTypes: [Passport, Aadhaar]}": ("spec.checks[0].piiTypes", "Aadhaar"),
    }
    for check, (field, words) in cases.items():
        bad = load_text(policy("p", "Gateway", "gw", check))
        assert not bad.ok, check
        assert any(e.field and e.field.startswith(field) and words in str(e) for e in bad.errors), (
            check,
            bad.errors,
        )


def test_route_policy_beats_gateway_policy_and_models_filter() -> None:
    m = load_text(
        policy("gw-wide", "Gateway", "gw", "{type: Secrets}")
        + "---"
        + policy("route", "HTTPRoute", "r", "{type: PromptInjection}", "models: [food-review]")
    )
    assert m.ok, m.errors
    guards = GuardSet(m.guard_policies)
    chosen = guards.for_request("default/gw", "default/r", "food-review")
    assert chosen is not None and chosen.config.name == "default/route"
    other = guards.for_request("default/gw", "default/r", "cad-fabricator")
    assert other is not None and other.config.name == "default/gw-wide"
    assert guards.for_request("default/other", None, "food-review") is None
    assert not GuardSet()


ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}]}]
"""

POOL_POLICY = """
apiVersion: inferpool.io/v1alpha1
kind: GuardPolicy
metadata: {name: on-pool}
spec:
  targetRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}]
  models: [food-review]
  checks: [{type: DenyList, terms: [project-x]}]
"""


def test_pool_policy_is_most_specific_and_the_epp_finds_policies_through_routes_to_its_pool() -> None:
    m = load_text(
        ROUTE
        + "---"
        + POOL_POLICY
        + "---"
        + policy("route", "HTTPRoute", "r", "{type: PromptInjection}")
        + "---"
        + policy("gw-wide", "Gateway", "gw", "{type: Secrets}")
    )
    assert m.ok, m.errors
    guards = GuardSet.from_manifests(m)
    # the built-in gateway: pool > route > gateway
    chosen = guards.for_request("default/gw", "default/r", "food-review", "default/pool")
    assert chosen is not None and chosen.config.name == "default/on-pool"
    chosen = guards.for_request("default/gw", "default/r", "cad-fabricator", "default/pool")
    assert chosen is not None and chosen.config.name == "default/route"
    # the EPP knows only its pool: the route that leads to it, then that route's Gateway
    chosen = guards.for_pool("default/pool", "food-review")
    assert chosen is not None and chosen.config.name == "default/on-pool"
    chosen = guards.for_pool("default/pool", "cad-fabricator")
    assert chosen is not None and chosen.config.name == "default/route"
    assert guards.for_pool("default/elsewhere", "cad-fabricator") is None
    gateway_only = GuardSet.from_manifests(
        load_text(ROUTE + "---" + policy("gw-wide", "Gateway", "gw", "{type: Secrets}"))
    )
    chosen = gateway_only.for_pool("default/pool", "any")
    assert chosen is not None and chosen.config.name == "default/gw-wide"


def test_a_target_group_must_fit_its_kind() -> None:
    bad = load_text(POOL_POLICY.replace("inference.networking.x-k8s.io", "gateway.networking.k8s.io"))
    assert not bad.ok and any(e.field and e.field.startswith("spec.targetRefs[0]") for e in bad.errors), (
        bad.errors
    )


def test_the_epp_knows_per_pool_whether_any_policy_screens_answers() -> None:
    """Before it reads the body (so before the model is known), the EPP asks whether some policy
    reaching its pool screens answers: then it reads every answer's headers."""
    answers = policy("answers", "Gateway", "gw", "{type: Secrets}", "models: [food-review]")
    prompts = POOL_POLICY.replace("on-pool", "prompts").replace(
        "{type: DenyList, terms: [project-x]}", "{type: PromptInjection, stages: [Prompt]}"
    )
    both = load_text(ROUTE + "---" + answers + "---" + prompts)
    assert both.ok, both.errors
    guards = GuardSet.from_manifests(both)
    assert guards.may_screen_responses("default/pool")  # through the route's Gateway, any model
    assert not guards.may_screen_responses("default/other")
    only_prompts = GuardSet.from_manifests(load_text(ROUTE + "---" + prompts))
    assert not only_prompts.may_screen_responses("default/pool")
    assert not GuardSet().may_screen_responses("default/pool")


WEBHOOK = policy("p", "Gateway", "gw", "{type: Secrets}") + "  webhook: {url: %s}\n"


def test_a_webhook_url_that_cannot_be_reached_is_refused_in_words() -> None:
    """Under FailClosed such a URL would block every prompt at run time."""
    cases = {
        '"http://"': "has no host",
        '"http://:9500/screen"': "has no host",
        '"http://exa mple .com:99999/x y"': "must not contain spaces",
        '"http://example.com:99999/x"': "has an invalid port '99999' (a number from 1 to 65535)",
        '"http://example.com:0/x"': "has an invalid port '0'",
        '"http://example.com:port/x"': "has an invalid port 'port'",
        '"ftp://example.com/x"': "must start with http:// or https://",
        '"example.com/screen"': "must start with http:// or https://",
        '"http://bad!host/x"': "has an invalid host 'bad!host'",
    }
    for url, words in cases.items():
        bad = load_text(WEBHOOK % url)
        (error,) = bad.errors
        assert error.field == "spec.webhook.url" and words in error.message, (url, str(error))
        assert "pattern" not in error.message
    for url in (
        "http://127.0.0.1:9500/screen",
        "https://screener.default.svc.cluster.local/screen",
        "http://[::1]:9500/screen",
        "http://screener_1:80/",
    ):
        assert load_text(WEBHOOK % f"'{url}'").ok, url


def test_the_on_pitfall_names_the_stages_field() -> None:
    """docs/security.md: the field is `stages`, not `on` (YAML reads a bare `on` as true)."""
    text = policy("g4", "Gateway", "gw", "{type: PromptInjection, on: [Prompt]}")
    text += "  webhook: {url: 'http://127.0.0.1:9500/screen', on: [Response]}\n"
    bad = load_text(text, "guard.yaml")
    assert [str(e) for e in bad.errors] == [
        "guard.yaml:8: GuardPolicy/g4: spec.checks[0].on: `on` is read by YAML as the boolean true, "
        "not as the key 'on'; write `stages:`",
        "guard.yaml:9: GuardPolicy/g4: spec.webhook.on: `on` is read by YAML as the boolean true, "
        "not as the key 'on'; write `stages:`",
    ]
