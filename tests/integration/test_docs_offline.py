"""`/docs` works without the internet: its pages load only what the app itself serves."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

EXPECTED_TYPES = {".js": "text/javascript", ".css": "text/css", ".json": "application/vnd.oai.openapi+json"}


class _References(HTMLParser):
    """Every URL a page makes the browser fetch: scripts, stylesheets, icons, and Scalar's `data-url`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in ("src", "href", "data-url"):
                self.urls.append(value)


@pytest.mark.parametrize("page", ["/docs", "/docs/swagger"])
async def test_docs_pages_load_only_same_origin_assets(client: AsyncTestClient[Litestar], page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    parser = _References()
    parser.feed(response.text)
    assert parser.urls, "the page references no assets at all"
    scripts = [url for url in parser.urls if url.endswith(".js")]
    assert scripts, parser.urls
    for url in parser.urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{page} loads {url} from another origin"
        assert url.startswith("/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, (url, asset.status_code)
        suffix = "." + parts.path.rsplit(".", 1)[-1]
        assert asset.headers["content-type"].startswith(EXPECTED_TYPES[suffix]), (url, asset.headers["content-type"])
        assert len(asset.content) > 100, url
    for host in ("cdn.jsdelivr.net", "unpkg.com", "fonts.googleapis.com", "cdn.redoc.ly"):
        assert host not in response.text, f"{page} still names {host}"


async def test_scalar_is_told_not_to_reach_the_internet(client: AsyncTestClient[Litestar]) -> None:
    # Its defaults load fonts from fonts.scalar.com and send "try it" requests (with the token) through its proxy.
    html = (await client.get("/docs")).text
    assert '"withDefaultFonts":false' in html
    assert '"proxyUrl":""' in html


async def test_the_licences_of_the_shipped_assets_are_served_with_them(client: AsyncTestClient[Litestar]) -> None:
    for path, words in (
        ("/docs/assets/scalar/LICENSE", "MIT License"),
        ("/docs/assets/swagger-ui/LICENSE", "Apache License"),
    ):
        response = await client.get(path)
        assert response.status_code == 200
        assert words in response.text
    assert (await client.get("/docs/assets/../app.py")).status_code == 404
