"""The project's own docs hold together: every relative link in README.md and docs/**/*.md
resolves to something in the repository (and to a heading, when it names one), none leaves the
repository, every page under docs/ can be reached from the README, and every Python example
parses. Links to other sites are left alone: only http(s) and mailto are taken as such."""

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted([README, *(ROOT / "docs").rglob("*.md")])
# the pages the README must lead to: the architecture, the API, one page per client protocol
REQUIRED = [
    "docs/architecture.md",
    "docs/api.md",
    "docs/protocols/session.md",
    "docs/protocols/echo.md",
    "docs/protocols/delayed-echo.md",
    "docs/protocols/wyoming.md",
    "docs/protocols/vonage.md",
    "docs/protocols/exotel.md",
    "docs/protocols/twilio.md",
]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^\s)>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^[ ]{0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", re.MULTILINE)
_HEADING = re.compile(r"^[ ]{0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE)
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
_EXTERNAL = re.compile(r"^(https?|mailto):", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where a link is only an example."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(page: Path) -> list[str]:
    prose = _prose(page.read_text(encoding="utf-8"))
    return _INLINE_LINK.findall(prose) + _REFERENCE.findall(prose)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text in lower case, punctuation dropped, each space
    a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text, not its target
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor a link may name in `page`: its headings' (with GitHub's -1, -2 … for repeats)
    and explicit `<a id=…>` ones."""
    text = page.read_text(encoding="utf-8")
    found: set[str] = set(_HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for _, heading in _HEADING.findall(_FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def problems(page: Path, target: str) -> Iterator[str]:
    """Why `target`, a link on `page`, is broken (nothing when it is fine)."""
    where = f"{page.relative_to(ROOT)}: link {target!r}"
    if not target:
        yield f"{where} is empty"
        return
    if _EXTERNAL.match(target):
        return
    if _SCHEME.match(target) or target.startswith("//"):
        yield f"{where} is neither a web link (http, https, mailto) nor a path in the repository"
        return
    path_part, _, fragment = target.partition("#")
    path_part = unquote(path_part.partition("?")[0])
    if path_part.startswith("/"):
        yield f"{where} is absolute; write it relative to {page.parent.relative_to(ROOT) or '.'}"
        return
    resolved = (page.parent / path_part).resolve() if path_part else page
    if not resolved.is_relative_to(ROOT):
        yield f"{where} leaves the repository (resolves to {resolved})"
        return
    if not resolved.exists():
        yield f"{where} names {resolved.relative_to(ROOT)}, which does not exist"
        return
    if fragment and resolved.suffix == ".md" and unquote(fragment).lower() not in anchors(resolved):
        yield f"{where}: {resolved.relative_to(ROOT)} has no heading with the anchor #{fragment}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    broken = [problem for target in links(page) for problem in problems(page, target)]
    assert not broken, "\n".join(broken)


def test_the_readme_leads_to_every_page_under_docs() -> None:
    reached, queue = {README}, [README]
    while queue:
        page = queue.pop()
        for target in links(page):
            if _SCHEME.match(target) or target.startswith(("#", "/")):
                continue
            linked = (page.parent / unquote(target.partition("#")[0])).resolve()
            if linked.suffix == ".md" and linked.is_file() and linked not in reached:
                reached.add(linked)
                queue.append(linked)
    pages = {page for page in PAGES if page != README}
    missing = [str(ROOT / name) for name in REQUIRED if not (ROOT / name).is_file()]
    assert not missing, f"documentation pages missing: {missing}"
    orphans = sorted(str(page.relative_to(ROOT)) for page in pages - reached)
    assert not orphans, f"pages no link from README.md leads to (link them from it or a docs page): {orphans}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_python_example_parses(page: Path) -> None:
    broken = []
    for number, code in enumerate(_PYTHON_BLOCK.findall(page.read_text(encoding="utf-8")), start=1):
        try:
            compile(code, f"{page.relative_to(ROOT)}, python example {number}", "exec")
        except SyntaxError as exc:
            broken.append(f"example {number}: {exc}")
    assert not broken, f"Python examples a user cannot run: {broken}"


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Guarantees and limits", "guarantees-and-limits"),
        ("A session's life", "a-sessions-life"),
        ("GET /api/audio/sessions/{id}", "get-apiaudiosessionsid"),
        ("Session protocol: `/api/ws/audio`", "session-protocol-apiwsaudio"),
        ("No loss, no duplicates", "no-loss-no-duplicates"),
    ],
)
def test_anchors_are_made_as_github_makes_them(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
