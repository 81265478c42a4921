"""/docs and /redoc work offline: every asset they reference is served by the API itself."""

from __future__ import annotations

import re

import httpx
import pytest

#: Every URL a page names: attributes, and the quoted URLs of its inline script.
URLS = re.compile(
    r"""(?:src|href|spec-url)=["']([^"']+)["']|url: ?["']([^"']+)["']|["'](https?://[^"']+)"""
)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_reference_only_local_urls_that_answer(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    urls = {next(g for g in match if g) for match in URLS.findall(response.text)}
    assert "/openapi.json" in urls, urls
    assert any(url.endswith(".js") for url in urls), urls
    remote = {url for url in urls if url.startswith(("http:", "https:", "//"))}
    assert remote == set(), remote
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url


async def test_swagger_ui_is_current_enough_for_openapi_3_1(client: httpx.AsyncClient) -> None:
    """Swagger UI 4 cannot render the OpenAPI 3.1 that FastAPI writes; 5 can."""
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")
    page = (await client.get("/docs")).text
    [script] = [u for u in re.findall(r'src="([^"]+)"', page) if "swagger-ui-bundle" in u]
    bundle = (await client.get(script)).text
    assert re.search(r'version:"5\.\d+\.\d+"|"5\.\d+\.\d+"', bundle), "Swagger UI 5"


async def test_the_oauth2_redirect_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/oauth2-redirect")
    assert response.status_code == 200 and "oauth2" in response.text.lower()
