"""`/docs`: the OpenAPI document and the interactive pages that show it, with their assets served by the app.

Litestar's render plugins load Scalar and Swagger UI (and a favicon, a stylesheet, Scalar its fonts) from public
CDNs by default: without the internet `/docs` would be a blank page. The files are shipped in the package instead
(bot/docs_assets/, see its README for versions and licences) and served under `/docs/assets/`.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
ASSETS_DIR = Path(__file__).resolve().parent / "docs_assets"

# Scalar's defaults reach out to scalar.com: fonts from its CDN, "try it" requests through its proxy (which would
# also see the bearer token), telemetry, and buttons for its hosted client, AI agent and MCP generator. None of it
# is wanted here.
SCALAR_OPTIONS = {
    "withDefaultFonts": False,
    "proxyUrl": "",
    "telemetry": False,
    "hideClientButton": True,
    "showDeveloperTools": "never",
    "agent": {"disabled": True},
    "mcp": {"disabled": True},
}


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="jem-bot",
        version="1.0.0",
        description="WhatsApp announcements for employers. Every endpoint except /health, /metrics, /docs "
        "and /webhooks/whatsapp needs `Authorization: Bearer <token>`; a token sees only its employer. Errors are "
        "RFC 9457 problem details (`application/problem+json`).",
        path=DOCS_PATH,
        render_plugins=[
            ScalarRenderPlugin(
                path="/",
                js_url=f"{ASSETS_PATH}/scalar/standalone.js",
                css_url=f"{ASSETS_PATH}/scalar/jem.css",
                options={**SCALAR_OPTIONS},
                # No <link rel=icon> (Litestar's points at a CDN).
                favicon="",
            ),
            SwaggerRenderPlugin(
                path="/swagger",
                js_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui-standalone-preset.js",
                favicon="",
            ),
        ],
        components=Components(security_schemes={"BearerToken": SecurityScheme(type="http", scheme="bearer")}),
        security=[{"BearerToken": []}],
    )


def docs_assets_router() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[ASSETS_DIR],
        name="docs-assets",
        include_in_schema=False,
        # The names carry no version: a day keeps a browser from fetching 6 MB on every visit, and an upgrade
        # reaches everyone within one.
        cache_control=CacheControlHeader(max_age=86_400, public=True),
    )
