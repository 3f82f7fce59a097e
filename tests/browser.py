"""A real browser for tests: Debian's `chromium`, headless, driven by Playwright (which may not
download a browser here), and a guard that keeps a page off the internet."""

import contextlib
import shutil
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

LOCAL_HOSTS = ("127.0.0.1", "localhost")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("no chromium browser: apt-get install -y chromium (make test installs it)")
    return found


@contextlib.asynccontextmanager
async def browser(*args: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium(), args=list(args))
        try:
            yield launched
        finally:
            await launched.close()


async def offline(page: Page) -> list[str]:
    """Refuse the page every request off this machine; the list fills with what it tried."""
    tried: list[str] = []

    async def guard(route: Route) -> None:
        url = route.request.url
        if url.startswith("data:") or urlsplit(url).hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            tried.append(url)
            await route.abort()

    await page.route("**/*", guard)
    return tried
