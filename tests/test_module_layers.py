"""How the modules depend on each other: the archive (`questions`) never needs the alerts built on it, and no
module of ours reaches itself again through its imports, whether made at the top or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT


def modules() -> dict[str, Path]:
    found = {}
    for path in [*ROOT.glob("alerts/**/*.py"), *ROOT.glob("questions/**/*.py"), *ROOT.glob("config/*.py")]:
        if "migrations" not in path.parts:
            found[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that `path` imports, anywhere but under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph, as the modules along it, or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for following in sorted(edges[name]):
            if state.get(following) == 1:
                return path[path.index(following):] + [following]
            if following not in state and (found := visit(following)):
                return found
        state[name] = 2
        path.pop()
        return []

    for name in sorted(edges):
        if name not in state and (found := visit(name)):
            return found
    return []


def test_the_archive_imports_nothing_from_the_alerts():
    assert sorted((name, d) for name, deps in graph().items() if name.startswith("questions")
                  for d in deps if d.startswith("alerts")) == []


def test_no_module_reaches_itself_through_its_imports():
    assert cycle(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert graph()["alerts.delivery"] >= {"alerts.metrics", "alerts.emails"}


def test_every_frequency_of_an_alert_is_a_kind_of_email():
    from alerts.models import Delivery, Subscription

    assert set(Subscription.Frequency.values) <= set(Delivery.Kind.values)
