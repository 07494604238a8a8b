"""The committed fidelity document matches what the rule registry and the spec generate."""

from __future__ import annotations

from pathlib import Path

from byok.emulator.fidelity import INFERRED, RULES, render

REPOSITORY = Path(__file__).resolve().parents[2]


def test_fidelity_doc_up_to_date() -> None:
    committed = (REPOSITORY / "docs" / "emulator-fidelity.md").read_text(encoding="utf-8")
    assert committed == render(), "run: .venv/bin/python -m byok.emulator.fidelity --write"


def test_every_rule_has_known_source() -> None:
    for rule in RULES:
        assert rule.source in ("document", "SDK model", INFERRED), rule
        assert rule.reference, rule
