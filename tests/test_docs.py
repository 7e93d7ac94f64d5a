"""The README's commands are the ones CI runs, and the docs' links and commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _fenced_commands(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = _fenced_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("pip install")
    ]
    assert len(ci) == 1, ci
    assert ci[0] in readme, (ci[0], readme[:2])
    assert ci[0].endswith("python -m pytest -q")


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for page in DOCS:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_docs_index_lists_every_page() -> None:
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    missing = sorted(p for p in pages if f"({p})" not in index)
    assert not missing, missing


def test_every_documented_command_exists() -> None:
    from edge_sdk.cli import app

    group = typer.main.get_command(app)
    known = set(group.commands)  # type: ignore[attr-defined]
    checks = group.commands["check"]  # type: ignore[attr-defined]
    documented = set()
    for page in DOCS:
        for line in _fenced_commands(page.read_text(encoding="utf-8")):
            for match in re.finditer(r"(?:^|[;&|] *)edge-sdk ([a-z][a-z-]*)(?: ([a-z]+))?", line):
                documented.add((match.group(1), match.group(2)))
    unknown = sorted(
        f"{cmd} {sub or ''}".strip()
        for cmd, sub in documented
        if cmd not in known
        or (cmd == "check" and sub and sub not in checks.commands)  # type: ignore[attr-defined]
    )
    assert not unknown, unknown
