"""The relay: sellers behind NAT sell through one outbound WebSocket (docs/relay.md).

``python -m service relay --exchange URL --public-url URL`` runs it as its own process,
beside the exchange (``python -m service --relay-url URL`` advertises it in
``/api/v1/info``). Sellers hold tunnels (:mod:`service.relay.app`); buyers' requests to
``{public-url}/s/{seller}/bitwrk/v1/...`` are forwarded over them as streams
(:mod:`bitwrk.tunnel`), after the exchange confirmed the trade (:mod:`service.relay.gate`).
"""
