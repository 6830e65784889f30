"""``python -m bitwrk.seller --exchange URL --cores N --min-price SAT``: a headless seller.

Renders with the ``bpy`` module in warm worker processes, prints one line per unit, and on
Ctrl-C (or SIGTERM) stops cleanly: open sell bids are cancelled, the current unit is
finished or rejected (the buyer is refunded), the workers exit. A status page (slots, recent
units, balance, errors, a pause button) is served on http://127.0.0.1:8571/ (``--status-port``).

``--device gpu`` (or ``gpu:N``, ``gpu:optix``, ``gpu:cuda:1``) sells GPU time: the workers
render on that Cycles device and the seller bids for the ``~gpu`` articles only;
``--list-devices`` prints the devices Cycles finds and exits. The default is ``cpu``.

Every render worker runs in the OS sandbox (Linux: bubblewrap; see
:mod:`bitwrk.seller.sandbox`). Where there is none the seller refuses to start unless
``--unsandboxed`` is given, and then warns that buyers' scenes run as the seller's user.

It stops only when told to: an unreachable exchange is retried (the status page says
"exchange unreachable since …, retrying"), a failed trade is logged and the next one bid
for. Exit codes: 0 stopped cleanly; 1 the daemon did not stop in time; 2 bad arguments;
3 no exchange within ``--wait-exchange`` seconds at start. ``kill -USR1 PID`` prints every
thread's stack to stderr and goes on (for a seller that seems stuck: what it waits on).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib.metadata
import logging
import signal
import sys
import time
from types import FrameType

from ..articles import COST_CLASSES, article_id
from ..client import describe
from ..daemon import Daemon, DaemonConfig, Offer, StartSelling
from ..daemon.events import Crashed, SellerUnit
from ..errors import ExchangeUnreachable
from ..money import format_amount
from .devices import Device, DeviceError
from .executor import RenderExecutor
from .pool import WorkerPool, allowed_cpus
from .sandbox import SandboxUnavailable

STATUS_PORT = 8571
EXIT_UNREACHABLE = 3


def blender_version() -> str:
    """major.minor of the installed ``bpy`` module, without importing it (0.5 s)."""
    version = importlib.metadata.version("bpy")
    return ".".join(version.split(".")[:2])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bitwrk.seller", description=__doc__)
    p.add_argument("--exchange", help="exchange URL (required unless --list-devices)")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), gpu, gpu:N, gpu:BACKEND or gpu:BACKEND:N (backends:"
                        " optix, cuda, hip, metal, oneapi); a GPU sells the ~gpu articles")
    p.add_argument("--list-devices", action="store_true",
                   help="print the Cycles compute devices found and exit")
    p.add_argument("--cores", type=int, help="CPU cores to offer (default: all allowed)")
    p.add_argument("--cpus", help="exact CPU ids to offer, e.g. 0,1 (overrides --cores)")
    p.add_argument("--slots", type=int, default=1, help="units rendered at once")
    p.add_argument("--min-price", type=int, help="satoshi per unit (required to sell)")
    p.add_argument("--classes", default="512M,2G", help="cost classes accepted")
    p.add_argument("--host", default="127.0.0.1", help="worker endpoint address")
    p.add_argument("--port", type=int, default=0, help="worker endpoint port (0: any)")
    p.add_argument("--public-url", help="URL buyers reach the endpoint at")
    reach = p.add_mutually_exclusive_group()
    reach.add_argument("--via-relay", dest="reach", action="store_const", const="relay",
                       default="auto", help="always sell through the exchange's relay")
    reach.add_argument("--direct", dest="reach", action="store_const", const="direct",
                       help="never use the relay (default: the exchange probes the endpoint"
                            " and the relay is used when buyers cannot reach it)")
    p.add_argument("--relay", help="relay URL (default: the one the exchange advertises)")
    p.add_argument("--memory", type=int,
                   help="memory (data segment) limit per worker, bytes (default: by cost class,"
                        " 1 GiB for 512M)")
    p.add_argument("--max-job-bytes", type=int,
                   help="largest job a buyer may send, expanded, bytes (default: by class)")
    p.add_argument("--unsandboxed", action="store_true",
                   help="run render workers WITHOUT the OS sandbox (only where none exists;"
                        " buyers' scenes could then read your files)")
    p.add_argument("--unit-timeout", type=float, default=3600.0, help="seconds per render")
    p.add_argument("--spare-after", type=float, default=5.0,
                   help="seconds a slot whose worker holds a buyer's file idles before a"
                        " spare worker (bpy imported, no file) starts beside it (default 5;"
                        " 0: no spares, saving ~95 MB per slot)")
    p.add_argument("--wait-exchange", type=float, default=600.0,
                   help="seconds to keep trying an unreachable exchange at start (exit 3)")
    p.add_argument("--status-host", default="127.0.0.1", help="status page address")
    p.add_argument("--status-port", type=int, default=STATUS_PORT,
                   help=f"status page port (default {STATUS_PORT}, another free one if taken;"
                        " 0: any; -1: no status page)")
    return p


def _cpus(args: argparse.Namespace) -> set[int]:
    if args.cpus:
        return {int(c) for c in args.cpus.split(",")}
    allowed = sorted(allowed_cpus())
    return set(allowed[: args.cores] if args.cores else allowed)


def list_devices(args: argparse.Namespace) -> int:
    """``--list-devices``: start one (sandboxed) worker that looks for every GPU."""
    import asyncio

    async def detect() -> dict[str, object]:
        async with WorkerPool(_cpus(args), 1, device="gpu",
                              unsandboxed=args.unsandboxed) as pool:
            return await pool.detect()

    try:
        ready = asyncio.run(detect())
    except DeviceError as exc:
        print(exc.message)
        return 0
    except SandboxUnavailable as exc:
        sys.exit(f"cannot look: {exc.message}; --unsandboxed looks without the sandbox")
    raw = ready.get("devices")
    found = [Device.from_json(d) for d in raw] if isinstance(raw, list) else []
    if not found:
        print("no GPU: Cycles finds no compute device here")
    for i, device in enumerate(found):
        print(f"{i}: {device.describe()}" + ("  (fake)" if ready.get("fake_devices") else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.list_devices:
        return list_devices(args)
    if not args.exchange or args.min_price is None:
        _parser().error("--exchange and --min-price are required to sell")
    if not args.spare_after >= 0:  # NaN too
        _parser().error("--spare-after must be 0 (no spares) or more seconds")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    unknown = [c for c in classes if c not in COST_CLASSES]
    if unknown or not classes:
        sys.exit(f"unknown cost classes {unknown}; choose from {list(COST_CLASSES)}")
    version = blender_version()
    largest = max(classes, key=COST_CLASSES.__getitem__)
    try:
        pool = WorkerPool(_cpus(args), args.slots, cost_class=largest, data_limit=args.memory,
                          timeout=args.unit_timeout, unsandboxed=args.unsandboxed,
                          device=args.device,
                          prewarm_after=args.spare_after if args.spare_after > 0 else None)
    except SandboxUnavailable as exc:
        sys.exit(f"not selling: {exc.message}; pass --unsandboxed to sell anyway, at your risk")
    except DeviceError as exc:
        sys.exit(f"not selling: {exc.message}")
    articles = tuple(article_id(version, c, gpu=pool.device.gpu) for c in classes)
    if args.unsandboxed:
        print("WARNING: selling without a sandbox: buyers' scenes run as your user and may"
              " read your files", file=sys.stderr, flush=True)
    daemon = Daemon(DaemonConfig(args.exchange, connect_for=args.wait_exchange))
    try:
        daemon.start()
    except ExchangeUnreachable as exc:
        print(f"error: {exc}; giving up", file=sys.stderr, flush=True)
        daemon.stop(10)
        return EXIT_UNREACHABLE
    try:  # warm: bpy imported (and the GPU found) before the first unit arrives
        ready = daemon.call(pool.detect(), 120)
    except DeviceError as exc:
        daemon.stop(10)
        sys.exit(f"not selling: {exc.message}")
    device = ", ".join(Device.from_json(d).describe() for d in ready.get("chosen", [])) or "CPU"
    offer = Offer(articles, args.min_price, args.slots)
    executor = RenderExecutor(pool, args.max_job_bytes)
    url = daemon.call(daemon.start_selling(StartSelling(
        offer, executor, args.host, args.port, args.public_url, args.reach, args.relay)), 60)
    assert daemon.seller is not None
    reach = daemon.seller.reach
    print(f"seller {daemon.address} on {url}: Blender {version}, classes {','.join(classes)},"
          f" min {args.min_price} sat, cpus {sorted(_cpus(args))}, device {device},"
          f" sandbox {pool.sandbox.kind}, {reach.mode} ({reach.detail})", flush=True)
    page = _status_page(daemon, args.status_host, args.status_port)
    if page is not None:
        print(f"status page: {page}", flush=True)
    return _serve(daemon, pool)


def _status_page(daemon: Daemon, host: str, port: int) -> str | None:
    if port < 0:
        return None
    try:
        url: str = daemon.call(daemon.start_status_page(host, port), 10)
    except OSError:
        if port != STATUS_PORT:
            raise
        url = daemon.call(daemon.start_status_page(host, 0), 10)  # e.g. a second seller
    return url


def _serve(daemon: Daemon, pool: WorkerPool) -> int:
    stop = {"requested": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with contextlib.suppress(OSError, ValueError):  # stderr without a file descriptor
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks on demand, C-level
    earned = 0
    code = 0
    while not stop["requested"]:
        event = daemon.runtime.wait_event(0.2)
        if isinstance(event, SellerUnit):
            earned += event.price if event.stage == "paid" else 0
            print(_line(event, earned), flush=True)
        elif isinstance(event, Crashed):
            print(f"error in {event.where}: {event.error}", file=sys.stderr, flush=True)
    print("stopping: cancelling bids, finishing the current unit ...", flush=True)
    daemon.hurry()  # an unreachable exchange must not hold the stop past its timeouts
    assert daemon.seller is not None
    try:
        daemon.call(daemon.seller.stop(grace=60.0), 90)
        daemon.call(pool.close(), 30)
    except Exception as exc:  # still stopping: one line, then the daemon goes
        print(f"error while stopping: {describe(exc)}", file=sys.stderr, flush=True)
        code = 1
    if not daemon.stop(30):
        code = 1
    print(f"stopped; earned {earned} sat this session", flush=True)
    return code


def _line(event: SellerUnit, earned: int) -> str:
    stamp = time.strftime("%H:%M:%S")
    who = event.buyer[:10]
    if event.stage == "rendered":
        return f"{stamp} tx {event.txid} rendered for {who} in {event.seconds:.2f}s"
    if event.stage == "paid":
        return (f"{stamp} tx {event.txid} paid {event.price} sat"
                f" (session total {format_amount(earned)})")
    if event.stage == "failed":
        return f"{stamp} tx {event.txid} failed: {event.detail}"
    return f"{stamp} tx {event.txid} {event.stage} for {who} at {event.price} sat"


if __name__ == "__main__":
    sys.exit(main())


