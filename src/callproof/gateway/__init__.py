"""The gateway: ``callproof serve``, Bedrock Runtime and OpenAI-compatible fronts over routes.

* :func:`~callproof.gateway.app.create_gateway_app` - the ASGI app (the seam: mount more routes).
* :class:`~callproof.gateway.server.GatewayServer` - hypercorn on a real socket (HTTP/1.1, h2c,
  TLS with ALPN h2), with the embedded emulator when the config needs it.
* :func:`~callproof.gateway.config.load_serve_config` - ``callproof.toml`` with ``[serve]``.

See docs/gateway.md.
"""

from __future__ import annotations

__all__: list[str] = []
