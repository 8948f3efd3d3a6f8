"""SECURITY.md names the test covering each threat: every one it names exists."""

from __future__ import annotations

import ast
import re

from apps.apikeys.keyformat import KeyKind, generate
from tests.servers import ROOT

POLICY = ROOT / "SECURITY.md"


def test_every_test_named_in_security_md_exists():
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", POLICY.read_text())
    assert len(named) >= 10

    for path, function in named:
        source = ROOT / path
        assert source.is_file(), path
        if function:
            defined = {
                node.name
                for node in ast.walk(ast.parse(source.read_text()))
                if isinstance(node, ast.FunctionDef)
            }
            assert function in defined, f"{path}::{function}"


def test_the_scanner_pattern_in_security_md_matches_a_real_key():
    pattern = re.search(r"```\n(.+)\n```", POLICY.read_text()).group(1)
    for kind in KeyKind:
        assert re.fullmatch(pattern, generate(kind))
