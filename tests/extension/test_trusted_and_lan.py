"""Trusted sellers only and LAN workers, below Blender: the settings field parses into
worker addresses, a job buys the ``~trusted`` article when asked, and a job that lists LAN
workers starts the daemon's LAN hub for exactly those addresses (one hub per daemon; a new
list replaces the old) against a real exchange process."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess
from tests.extension.conftest import ROOT

PACKAGE = "bitwrk_extension_under_test"  # the repo root as the extension's package
ARTICLE = "net.bitwrk/blender/5.0/512M"
WORKERS = ("tb1qworker0example", "tb1qworker1example")


def extension(module: str) -> ModuleType:
    """``blender.<module>`` imported as Blender imports it (inside the extension package),
    without running the root ``__init__`` (which needs bpy)."""
    if PACKAGE not in sys.modules:
        spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
        package = importlib.util.module_from_spec(spec)
        package.__path__ = [str(ROOT)]
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.blender.{module}")


def test_the_trusted_variant_of_the_article() -> None:
    session = extension("session")
    assert session.job_article(ARTICLE, True) == ARTICLE + "~trusted"
    assert session.job_article(ARTICLE, False) == ARTICLE
    assert session.job_article(ARTICLE + "~trusted", True) == ARTICLE + "~trusted"


def test_lan_workers_field_parses_into_addresses() -> None:
    parse = extension("session").parse_workers
    assert parse("") == ()
    assert parse(" a, b\nc  a,, ") == ("a", "b", "c")


def test_requests_carry_both_settings() -> None:
    session, animation = extension("session"), extension("animation")
    common: dict[str, Any] = {"blend": Path("x.blend"), "info": {}, "exchange_url": "u",
                              "max_price": 10, "budget": 0, "tiles": 0}
    for request in (session.RenderRequest(frame=1, trusted_only=True, lan_workers=WORKERS,
                                          **common),
                    animation.AnimationRequest(outputs={1: "f"}, trusted_only=True,
                                               lan_workers=WORKERS, **common)):
        assert request.trusted_only and request.lan_workers == WORKERS
    assert not session.RenderRequest(frame=1, **common).trusted_only
    assert session.RenderRequest(frame=1, **common).lan_workers == ()


@pytest.fixture
def exchange(tmp_path: Path) -> Any:
    server = ServerProcess(tmp_path / "exchange", timeout_scale=0.5).start()
    yield server
    server.close()


def test_a_job_with_lan_workers_starts_the_hub_and_buys_trusted(
        exchange: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    session, bridge_module = extension("session"), extension("bridge")
    bridge = bridge_module.Bridge()
    try:
        daemon = bridge.connect(exchange.url)
        plan = SimpleNamespace(article=ARTICLE)
        request = SimpleNamespace(lan_workers=WORKERS, trusted_only=True, budget=0,
                                  max_price=10, timeout=60.0, concurrency=2)
        hubs = extension("lan_hub").LanHubControl
        monkeypatch.setattr(hubs, "start", _on_loopback(hubs.start))
        job = session.start_job(bridge, request, plan, [("u0", b"{}")], tmp_path)
        assert job.article == ARTICLE + "~trusted"
        assert job.mandate.budget == int(10 * session.FEE_ROOM) + 100
        url = bridge.status.lan_url
        assert url.startswith("http://127.0.0.1:") and bridge.status.lan_workers == WORKERS
        assert daemon.buyer.lan is not None and daemon.buyer.lan.trusted == set(WORKERS)
        with pytest.raises(urllib.error.HTTPError) as refused:  # unsigned: not a worker
            urllib.request.urlopen(url + "/lan/v1/work", timeout=10)
        assert refused.value.code in (400, 403)
        # a second job with another list: same hub, the new addresses
        request.lan_workers, request.trusted_only = WORKERS[:1], False
        job = session.start_job(bridge, request, plan, [("u0", b"{}")], tmp_path)
        assert job.article == ARTICLE
        assert bridge.status.lan_url == url and daemon.buyer.lan.trusted == {WORKERS[0]}
        # no LAN workers: no hub is started (one daemon per identity: the first one ends)
        assert bridge.stop()
        fresh = bridge_module.Bridge()
        fresh.connect(exchange.url)
        request.lan_workers = ()
        session.start_job(fresh, request, plan, [("u0", b"{}")], tmp_path)
        assert fresh.status.lan_url == "" and fresh.daemon.buyer.lan is None
        assert fresh.stop()
    finally:
        assert bridge.stop()


def test_a_hub_on_every_interface_is_shown_as_others_reach_it() -> None:
    shown = extension("bridge").shown_url("http://0.0.0.0:4711")
    assert shown.startswith("http://") and shown.endswith(":4711") and "0.0.0.0" not in shown
    assert extension("bridge").shown_url("http://127.0.0.1:1") == "http://127.0.0.1:1"


def _on_loopback(start: Any) -> Any:
    def start_lan_hub(self: Any, workers: tuple[str, ...], **kwargs: Any) -> str:
        return str(start(self, workers, host="127.0.0.1"))

    return start_lan_hub
