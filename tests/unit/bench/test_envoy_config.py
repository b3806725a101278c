"""deploy/envoy/envoy.yaml as rendered: where a request the EPP did not pick for goes."""

from __future__ import annotations

import json
from typing import Any

import yaml

from inferpool.extproc.envoy import EnvoyConfig


def _routes(config: EnvoyConfig) -> list[dict[str, Any]]:
    rendered = yaml.safe_load(config.render())
    manager = rendered["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    [host] = manager["route_config"]["virtual_hosts"]
    return list(host["routes"])


def test_fail_close_answers_an_unpicked_request_itself() -> None:
    picked, unpicked = _routes(EnvoyConfig(epp_port=9002, pool_ports=[8000]))
    assert picked["match"]["headers"][0]["name"] == "x-gateway-destination-endpoint"
    assert "route" not in unpicked
    assert unpicked["direct_response"]["status"] == 503
    error = json.loads(unpicked["direct_response"]["body"]["inline_string"])["error"]
    assert error["code"] == 503 and error["type"] == "ServiceUnavailableError"
    assert unpicked["response_headers_to_add"][0]["header"] == {
        "key": "content-type",
        "value": "application/json",
    }


def test_fail_open_and_the_envoy_only_baseline_forward_unpicked_requests_to_the_pool() -> None:
    fail_open = EnvoyConfig(epp_port=9002, pool_ports=[8000], failure_mode_allow=True)
    baseline = EnvoyConfig(epp_port=9002, pool_ports=[8000], ext_proc=False)
    for config in (fail_open, baseline):
        unpicked = _routes(config)[-1]
        assert unpicked["route"]["cluster"] == "pool_endpoints"
        assert "direct_response" not in unpicked
