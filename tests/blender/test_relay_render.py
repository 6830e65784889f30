"""Real Cycles renders through the relay (docs/relay.md), with real processes: a headless
seller that sells ``--via-relay`` on loopback, and two sellers in one "home" network
namespace behind NAT that nobody can connect to — they find out through the exchange's
probe and fall back to the relay by themselves. The bundled scene renders bit-identical to
a local render, and the relay's capture of everything it forwarded holds no plaintext
scene bytes.

The namespace test builds its own topology (``ip netns``, veth pairs, nftables
MASQUERADE, addresses from 198.18.0.0/15 assigned only inside the namespaces) and needs
root, ``ip`` and ``nft``; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.blender.conftest import needs_bpy
from tests.blender.test_render_exact import assert_identical
from tests.blender.test_swarm import ROOT, Node, credit
from tests.e2e.relayproc import relay_pair

pytestmark = [needs_bpy, pytest.mark.slow]
TILES = "2"


def assert_no_plaintext(scene: Path, capture: Path) -> None:
    carried = capture.read_bytes()
    data = scene.read_bytes()
    assert len(carried) > 1000, "the relay forwarded nothing"
    windows = [data[i:i + 48] for i in range(0, len(data) - 48, max(1, len(data) // 200))]
    distinct = [w for w in windows if len(set(w)) > 8]  # skip runs of zeros and padding
    assert distinct and not [w for w in distinct if w in carried]


def test_a_seller_via_the_relay_renders_a_frame_identical_to_a_local_render(
        scene_dir: Path, references: Path, tmp_path: Path) -> None:
    exchange, relay = relay_pair(tmp_path, timeout_scale=0.5)
    seller = Node(tmp_path / "seller")
    try:
        seller.start("bitwrk.seller", "--exchange", exchange.url, "--cpus", "0",
                     "--min-price", "10", "--classes", "512M", "--via-relay",
                     "--status-port", "-1")
        line = seller.wait_for(r"seller \S+ on (http\S+): .*", 120)
        assert line.group(1).startswith(relay.url) and "via relay" in line.group(0)
        buyer = Node(tmp_path / "buyer")
        credit(exchange, buyer.address(), 1_000_000)
        result = buyer.run("bitwrk.buy", str(scene_dir / "scene.blend"), "--exchange",
                           exchange.url, "--max-price", "100", "--out", str(tmp_path / "out"),
                           "--tiles", TILES, "--allow-local-sellers")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert_identical(tmp_path / "out" / "Shot_0001", references, "plain")
        assert_no_plaintext(scene_dir / "scene.blend", relay.capture)
    finally:
        assert seller.stop() == 0, seller.output()[-2000:]
        relay.close()
        exchange.close()


# -- behind NAT, in network namespaces ------------------------------------------------------

ISP, HOME, ROUTER_ISP, ROUTER_HOME = "198.18.0.1", "198.19.0.2", "198.18.0.2", "198.19.0.1"


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def _nft(ns: str, rules: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules.encode(),
                   check=True, capture_output=True, timeout=30)


class Topology:
    """isp (exchange, relay, buyer) — router (NAT) — home (sellers): the home network
    connects out through MASQUERADE, and the router forwards nothing in."""

    def __init__(self) -> None:
        tag = f"bw{os.getpid() % 100000}"
        self.isp, self.router, self.home = f"{tag}i", f"{tag}r", f"{tag}h"
        self.links = (f"{tag}a", f"{tag}b", f"{tag}c", f"{tag}d")

    def ns(self, name: str, *args: str) -> None:
        _sh("ip", "netns", "exec", name, *args)

    def up(self) -> None:
        a, b, c, d = self.links
        for name in (self.isp, self.router, self.home):
            _sh("ip", "netns", "add", name)
            self.ns(name, "ip", "link", "set", "lo", "up")
        _sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        _sh("ip", "link", "add", c, "type", "veth", "peer", "name", d)
        for link, name in ((a, self.isp), (b, self.router), (c, self.router), (d, self.home)):
            _sh("ip", "link", "set", link, "netns", name)
        for name, link, address in ((self.isp, a, ISP), (self.router, b, ROUTER_ISP),
                                    (self.router, c, ROUTER_HOME), (self.home, d, HOME)):
            self.ns(name, "ip", "addr", "add", f"{address}/24", "dev", link)
            self.ns(name, "ip", "link", "set", link, "up")
        self.ns(self.home, "ip", "route", "add", "default", "via", ROUTER_HOME)
        # the isp knows the way (so a probe's SYN reaches the router and is dropped there)
        self.ns(self.isp, "ip", "route", "add", "198.19.0.0/24", "via", ROUTER_ISP)
        self.ns(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        rules = (f"table ip nat {{\n chain nat_out {{\n"
                 f"  type nat hook postrouting priority 100;\n"
                 f"  oifname \"{b}\" ip saddr 198.19.0.0/24 masquerade\n }}\n}}\n"
                 f"table inet filter {{\n chain guard {{\n"
                 f"  type filter hook forward priority 0; policy drop;\n"
                 f"  ct state established,related accept\n  iifname \"{c}\" accept\n }}\n}}\n")
        _nft(self.router, rules)

    def down(self) -> None:
        for name in (self.isp, self.router, self.home):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


class NsNode(Node):
    """A :class:`Node` whose processes run inside network namespace ``ns``."""

    def __init__(self, base: Path, ns: str) -> None:
        super().__init__(base)
        self.ns = ns

    def _argv(self, args: tuple[str, ...]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, sys.executable, "-m", *args]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._argv(args), env=self.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        self.log = open(self.base / "out.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self._argv(args), env=self.env, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        return self.proc


@pytest.fixture
def topology() -> Iterator[Topology]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if not (shutil.which("ip") and shutil.which("nft")):
        pytest.skip("needs ip (iproute2) and nft (nftables): make's set-up installs them")
    topo = Topology()
    try:
        topo.up()
    except (subprocess.CalledProcessError, OSError) as exc:
        topo.down()
        err = getattr(exc, "stderr", b"") or b""
        text = err.decode(errors="replace") if isinstance(err, bytes) else str(err)
        pytest.skip(f"cannot build network namespaces here: {exc} {text[-300:]}")
    yield topo
    topo.down()


def test_two_sellers_behind_one_nat_fall_back_to_the_relay_and_render(
        topology: Topology, scene_dir: Path, references: Path, tmp_path: Path) -> None:
    exchange_url, relay_url = f"http://{ISP}:8480", f"http://{ISP}:8481"
    ex, relay = NsNode(tmp_path / "exchange", topology.isp), NsNode(tmp_path / "relay",
                                                                   topology.isp)
    sellers = [NsNode(tmp_path / f"seller{i}", topology.home) for i in range(2)]
    buyer = NsNode(tmp_path / "buyer", topology.isp)
    db, capture = tmp_path / "exchange" / "ex.sqlite3", tmp_path / "relay" / "capture.bin"
    try:
        ex.start("service", "--db", str(db), "--host", ISP, "--port", "8480",
                 "--timeout-scale", "0.5", "--relay-url", relay_url, "--allow-local-probes")
        relay.start("service", "relay", "--exchange", exchange_url, "--host", ISP, "--port",
                    "8481", "--capture", str(capture))
        ex.wait_for("BitWrk exchange on")
        relay.wait_for("BitWrk relay on")
        # auto: the exchange may call private addresses here, yet its probe of the home
        # endpoints cannot get through the NAT — so both sellers tunnel out by themselves
        for i, seller in enumerate(sellers):
            seller.start("bitwrk.seller", "--exchange", exchange_url, "--host", HOME,
                         "--cpus", str(i), "--min-price", str(10 + i), "--classes", "512M",
                         "--status-port", "-1")
        for seller in sellers:
            line = seller.wait_for(r"seller \S+ on (http\S+): .*", 180).group(0)
            assert f"on {relay_url}/s/" in line and "via relay (not reachable directly" in line
        address = buyer.address()
        got = buyer.run("service", "credit", address, "1000000", "--exchange", exchange_url,
                        "--db", str(db))
        assert got.returncode == 0, got.stderr
        result = buyer.run("bitwrk.buy", str(scene_dir / "scene.blend"), "--exchange",
                           exchange_url, "--max-price", "100", "--out", str(tmp_path / "out"),
                           "--tiles", TILES, "--allow-local-sellers")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert_identical(tmp_path / "out" / "Shot_0001", references, "plain")
        assert_no_plaintext(scene_dir / "scene.blend", capture)
        assert relay.output().count("tunnel up") >= 2
        # two units at once: each seller took one, through its own tunnel
        assert all("rendered" in seller.output() for seller in sellers)
    finally:
        codes = [node.stop() for node in (*sellers, relay, ex)]
        assert codes[:2] == [0, 0], [s.output()[-2000:] for s in sellers]
