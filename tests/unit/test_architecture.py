"""The layout's rules, read from the imports with ``ast`` (docs/architecture.md states them).

Each rule is a function from a source root to a list of violations, so that
the same function checks the real tree and, in the ``planted`` tests, a
temporary tree with one deliberate violation: a rule that could not fail would
show up there. Imports count wherever they stand (inside functions and under
``TYPE_CHECKING`` too): a lazy import is still a dependency.

Units: a module directly in a top-level package (``gateway/node.py``) belongs
to that package's unit (``gateway``); anything deeper belongs to its
second-level package (``exchange/core/codec/body.py`` to ``exchange.core``).
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
PACKAGES: Final = ("exchange", "gateway", "keys", "liaison")
GENERATED: Final = "exchange._pb"
MAX_LINES: Final = 600

# The pure core: no event loop, network, database or web framework.
PURE: Final = (
    "exchange.core",
    "exchange.core.*",
    "gateway.decide",
    "gateway.audit.codec",
    "gateway.audit.errors",
    "gateway.audit.merkle",
    "gateway.audit.query",
    "gateway.audit.record",
    "gateway.audit.tree",
    "gateway.audit.treehead",
    "gateway.audit.verify",
    "gateway.witness.checks",
)
IMPURE_IMPORTS: Final = ("asyncio", "nats", "grpc", "sqlite3", "psycopg", "aiohttp", "socket", "subprocess")
HAZMAT: Final = "cryptography.hazmat"
HAZMAT_HOME: Final = "exchange.core.primitives"
# Message classes (``*_pb2``) are the codec's alone; gRPC stubs and servicers (``*_pb2_grpc``)
# are imported where a servicer is registered or a stub is made.
CODEC: Final = ("exchange.core.codec", "exchange.core.codec.*", "gateway.audit.codec")
GRPC_GLUE: Final = (
    "exchange.client.*",
    "exchange.office.service",
    "gateway.client",
    "gateway.service",
    "liaison.serve.*",
)
# What each unit may import of ours (besides itself and the generated code, which the
# generated-code rule governs).
LAYERS: Final[dict[str, frozenset[str]]] = {
    "exchange": frozenset(),
    "exchange.core": frozenset(),
    "exchange.nats": frozenset({"exchange.core"}),
    "exchange.runtime": frozenset({"exchange.core", "exchange.nats"}),
    "exchange.office": frozenset({"exchange.core", "exchange.nats", "exchange.runtime"}),
    "exchange.client": frozenset({"exchange.core"}),
    "gateway": frozenset(
        {
            "exchange.core",
            "exchange.nats",
            "exchange.runtime",
            "exchange.client",
            "gateway.audit",
            "gateway.console",
        }
    ),
    "gateway.audit": frozenset({"exchange.core", "exchange.runtime"}),
    "gateway.witness": frozenset(
        {"exchange.core", "exchange.client", "exchange.runtime", "gateway", "gateway.audit"}
    ),
    "gateway.console": frozenset({"exchange.core", "exchange.runtime", "gateway", "gateway.audit"}),
    "keys": frozenset({"exchange.core"}),
}
# The SDK for agency systems installs without the server stack.
CLIENT_FORBIDDEN: Final = ("nats", "sqlite3", "psycopg", "aiohttp", "prometheus_client")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module (or package) imported
    line: int


class Tree:
    """The modules of our packages under ``root`` and every import they make."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: dict[str, Path] = {}
        for package in PACKAGES:
            for path in sorted((root / package).rglob("*.py")):
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                name = ".".join(parts)
                if not _under(name, GENERATED):
                    self.paths[name] = path
        self.packages = {n for n, p in self.paths.items() if p.name == "__init__.py"}
        self.imports = sorted({i for name in self.paths for i in self._read(name)}, key=_order)

    def _read(self, name: str) -> Iterator[Import]:
        path = self.paths[name]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(name, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}:{node.lineno}: relative import"
                base = node.module or ""
                for alias in node.names:
                    # `from pkg import mod` imports the submodule where there is one
                    sub = f"{base}.{alias.name}"
                    known = sub in self.paths or (
                        _under(sub, GENERATED) and sub.endswith(("_pb2", "_pb2_grpc"))
                    )
                    yield Import(name, sub if known else base, node.lineno)

    def unit(self, name: str) -> str | None:
        parts = name.split(".")
        if parts[0] not in PACKAGES:
            return None
        if _under(name, GENERATED):
            return GENERATED
        return ".".join(parts[:2]) if len(parts) > 2 or name in self.packages else parts[0]

    def where(self, imp: Import, why: str = "") -> str:
        text = f"{self.paths[imp.module].relative_to(self.root)}:{imp.line}: {imp.target}"
        return f"{text} ({why})" if why else text


def _order(i: Import) -> tuple[str, int, str]:
    return (i.module, i.line, i.target)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


# ---------------------------------------------------------------- the rules


def rule_pure_core(tree: Tree) -> list[str]:
    """The pure core imports no event loop, network, database or web framework."""
    return [
        tree.where(i)
        for i in tree.imports
        if _matches(i.module, PURE) and any(_under(i.target, bad) for bad in IMPURE_IMPORTS)
    ]


def rule_hazmat(tree: Tree) -> list[str]:
    """Only the primitives module imports ``cryptography.hazmat``."""
    return [tree.where(i) for i in tree.imports if _under(i.target, HAZMAT) and i.module != HAZMAT_HOME]


def rule_generated_code(tree: Tree) -> list[str]:
    """Generated message classes only in the codec; stubs and servicers only in the gRPC glue."""
    return [
        tree.where(i)
        for i in tree.imports
        if _under(i.target, GENERATED)
        and not _matches(i.module, CODEC)
        and not (i.target.endswith("_pb2_grpc") and _matches(i.module, GRPC_GLUE))
    ]


def rule_keys_not_below(tree: Tree) -> list[str]:
    """``keys`` builds on ``exchange.core``; nothing in ``exchange`` or ``gateway`` imports it."""
    return [
        tree.where(i)
        for i in tree.imports
        if _under(i.target, "keys") and i.module.split(".")[0] in ("exchange", "gateway")
    ]


def rule_layers(tree: Tree) -> list[str]:
    """Each unit imports only the units its layer allows; the SDK no server plumbing."""
    bad = []
    for i in tree.imports:
        src, dst = tree.unit(i.module), tree.unit(i.target)
        if src == "exchange.client" and any(_under(i.target, f) for f in CLIENT_FORBIDDEN):
            bad.append(tree.where(i, "the SDK imports no server plumbing"))
        elif src in LAYERS and dst not in (None, src, GENERATED) and dst not in LAYERS[src]:
            bad.append(tree.where(i, f"{src} may not import {dst}"))
    return bad


def rule_no_cycles(tree: Tree) -> list[str]:
    """No import cycle between units (top-level packages and their subpackages)."""
    edges: dict[str, set[str]] = {}
    for i in tree.imports:
        src, dst = tree.unit(i.module), tree.unit(i.target)
        if src and dst and src != dst:
            edges.setdefault(src, set()).add(dst)
    cycles: list[str] = []
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return cycles


def rule_module_size(tree: Tree) -> list[str]:
    """No hand-written module over 600 lines: split it by responsibility."""
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in tree.paths.values()}
    return [f"{p.relative_to(tree.root)}: {n} lines" for p, n in sizes.items() if n > MAX_LINES]


RULES: Final[dict[str, Callable[[Tree], list[str]]]] = {
    "pure-core": rule_pure_core,
    "hazmat": rule_hazmat,
    "generated-code": rule_generated_code,
    "keys-not-below": rule_keys_not_below,
    "layers": rule_layers,
    "no-cycles": rule_no_cycles,
    "module-size": rule_module_size,
}


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_the_tree_keeps_the_rule(rule: Callable[[Tree], list[str]]) -> None:
    assert rule(Tree(ROOT)) == []


# ---------------------------------------------------------------- each rule can fail

_BASE: Final = {
    "exchange/__init__.py": "",
    "exchange/core/__init__.py": "",
    "exchange/core/primitives.py": "from cryptography.hazmat.primitives import hashes\n",
    "exchange/core/codec/__init__.py": "",
    "exchange/core/codec/body.py": "from exchange._pb.liaison.v1 import body_pb2\nimport exchange.core\n",
    "exchange/core/model.py": "X = 1\n",
    "exchange/core/seal.py": "from exchange.core.codec import body\n",
    "exchange/nats/__init__.py": "",
    "exchange/nats/transport.py": "import asyncio\nimport nats\nfrom exchange.core import model\n",
    "exchange/office/__init__.py": "",
    "exchange/office/service.py": "from exchange._pb.liaison.v1 import exchange_pb2_grpc\nimport grpc\n",
    "exchange/client/__init__.py": "",
    "exchange/client/sdk.py": "import grpc\nfrom exchange.core import model\n",
    "gateway/__init__.py": "",
    "gateway/node.py": "from exchange.nats import transport\nfrom gateway.audit import merkle\n",
    "gateway/audit/__init__.py": "",
    "gateway/audit/merkle.py": "import hashlib\n",
    "keys/__init__.py": "",
    "keys/keystore.py": "from exchange.core import primitives\n",
    "liaison/__init__.py": "",
    "liaison/cli.py": "import keys.keystore\nimport gateway.node\nimport exchange.office.service\n",
}

PLANTED: Final[dict[str, tuple[dict[str, str], str]]] = {
    "pure-core": ({"exchange/core/clock.py": "import asyncio\n"}, "exchange/core/clock.py:1: asyncio"),
    "hazmat": (
        {"exchange/core/seal.py": "from cryptography.hazmat.primitives.asymmetric import ed25519\n"},
        "exchange/core/seal.py:1: cryptography.hazmat.primitives.asymmetric",
    ),
    "generated-code": (
        {"exchange/office/node.py": "from exchange._pb.liaison.v1 import envelope_pb2\n"},
        "exchange/office/node.py:1: exchange._pb.liaison.v1.envelope_pb2",
    ),
    "keys-not-below": (
        {"gateway/node.py": "from keys import keystore\n"},
        "gateway/node.py:1: keys.keystore",
    ),
    "layers": (
        {"exchange/nats/transport.py": "from exchange.office import service\n"},
        "exchange/nats/transport.py:1: exchange.office.service"
        " (exchange.nats may not import exchange.office)",
    ),
    "no-cycles": (
        {"gateway/audit/store.py": "from gateway import node\n"},
        "gateway -> gateway.audit -> gateway",
    ),
    "module-size": (
        {"exchange/office/node.py": "x = 1\n" * (MAX_LINES + 1)},
        "exchange/office/node.py: 601 lines",
    ),
}


def _tree(tmp_path: Path, files: dict[str, str]) -> Tree:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Tree(tmp_path)


@pytest.mark.parametrize("name", RULES.keys())
def test_a_clean_planted_tree_passes(tmp_path: Path, name: str) -> None:
    assert RULES[name](_tree(tmp_path, _BASE)) == []


@pytest.mark.parametrize("name", PLANTED.keys())
def test_each_rule_catches_a_planted_violation(tmp_path: Path, name: str) -> None:
    files, expected = PLANTED[name]
    assert RULES[name](_tree(tmp_path, {**_BASE, **files})) == [expected]


def test_the_sdk_imports_no_server_plumbing(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {**_BASE, "exchange/client/sdk.py": "import sqlite3\n"})
    assert rule_layers(tree) == ["exchange/client/sdk.py:1: sqlite3 (the SDK imports no server plumbing)"]


def test_every_rule_is_planted() -> None:
    assert set(PLANTED) == set(RULES)
