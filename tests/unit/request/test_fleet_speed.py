"""A slowed simulated fleet: every wall-clock interval of the core stretches by 1 / its speed."""

from __future__ import annotations

import pytest

from inferpool.request.core import Core, CoreConfig, at_fleet_speed
from inferpool.scrape import ScrapeConfig


def test_full_speed_changes_nothing() -> None:
    config = CoreConfig(scheduler="flow-control")
    core = Core(config)
    assert core.config == config
    assert core.spec.flow_control is not None
    assert core.flow_control is not None
    assert core.flow_control.config == core.spec.flow_control


def test_eighth_speed_stretches_every_interval_eightfold() -> None:
    base = ScrapeConfig()
    core = Core(CoreConfig(scheduler="flow-control", fleet_speed=0.125, health_probes=True))
    scrape = core.config.scrape
    assert scrape is not None
    assert scrape.interval_s == pytest.approx(base.interval_s * 8)
    assert scrape.models_interval_s == pytest.approx(base.models_interval_s * 8)
    assert scrape.stale_after_s == pytest.approx(base.stale_after_s * 8)
    assert scrape.timeout_s == base.timeout_s  # how long to wait for an answer is wall time
    assert core.config.admission.saturation.stale_after_s == pytest.approx(
        CoreConfig().admission.saturation.stale_after_s * 8
    )
    parsed = core.spec.flow_control
    assert parsed is not None and parsed.default_request_ttl_s == 30.0
    assert core.flow_control is not None
    running = core.flow_control.config
    assert running.default_request_ttl_s == pytest.approx(240.0)
    assert running.recheck_interval_s == pytest.approx(parsed.recheck_interval_s * 8)
    assert running.scrape_lag_s == pytest.approx(parsed.scrape_lag_s * 8)
    assert core.prober is not None and core.prober.interval_scale == pytest.approx(8.0)
    assert core.scraper is not None and core.scraper.config.interval_s == pytest.approx(0.4)


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        at_fleet_speed(CoreConfig(fleet_speed=0.0), None)
