"""The dashboard: a web page the node serves at ``GET /`` on its RPC port.

Plain HTML, JavaScript and CSS shipped in this package (no build step, nothing fetched
from elsewhere). The page talks to the node's own JSON-RPC (``POST /``, same origin)
and polls it: the chain's latest blocks with their job, steps, miner and this node's
verification time (``pouw_blockImports``); the jobs with progress, ETA, an accuracy curve
over their checkpoints (``pouw_getJobHistory``), fees and audit state where the node
reports one; the miners of recent blocks and their rewards (``pouw_getRewards``); this
node's miner and GPUs (``pouw_minerStatus``).

``pouw-node run --no-dashboard`` leaves it out: ``GET /`` then answers 405 as before.
Every response carries a Content-Security-Policy that allows only this origin's own
scripts, styles and requests, and no framing.
"""
from __future__ import annotations

from importlib import resources

from aiohttp import web

ASSETS = {
    "index.html": "text/html",
    "app.js": "application/javascript",
    "style.css": "text/css",
}
"""The only files served (under /dashboard/); nothing else of the package is reachable."""
ASSET_PATH = "/dashboard/{name}"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_cache: dict[str, bytes] = {}


def asset(name: str) -> bytes:
    """A dashboard file's bytes (read once from the package)."""
    if name not in ASSETS:
        raise KeyError(name)
    data = _cache.get(name)
    if data is None:
        data = _cache[name] = resources.files(__package__).joinpath(name).read_bytes()
    return data


def _response(name: str) -> web.Response:
    return web.Response(body=asset(name), content_type=ASSETS[name], charset="utf-8", headers=SECURITY_HEADERS)


def dashboard_page() -> web.Response:
    """``GET /`` from a browser: the page."""
    return _response("index.html")


async def handle_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        return web.Response(status=404, text="not found")
    return _response(name)


def add_dashboard_routes(app: web.Application) -> None:
    """The page's scripts and styles under /dashboard/ (``GET /`` itself is the RPC
    server's WebSocket route, which hands plain GETs to :func:`dashboard_page`)."""
    app.router.add_get(ASSET_PATH, handle_asset)


__all__ = ["dashboard_page", "add_dashboard_routes", "asset", "ASSETS"]
