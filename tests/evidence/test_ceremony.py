"""The ceremony record's fixed judgements and its HTML summary."""

from __future__ import annotations

from byok.evidence import ceremony


def test_pkcs1_v15_transport_disallowed() -> None:
    verdict = ceremony.wrapping_verdict("RSAES_PKCS1_V1_5", "RSA_2048")

    assert verdict["verdict"] == "disallowed"
    assert "NIST SP 800-131A Rev. 2" in verdict["reason"]
    assert verdict["OAEP hash"] == "not applicable"


def test_oaep_transport_states_strength() -> None:
    verdict = ceremony.wrapping_verdict("RSAES_OAEP_SHA_256", "RSA_2048")

    assert verdict["verdict"] == "acceptable"
    assert verdict["OAEP hash"] == "SHA-256"
    assert verdict["MGF1 hash"] == "SHA-256"
    assert verdict["transport strength (bits, estimate)"] == 112
    assert verdict["key strength (bits)"] == 256


def test_people_are_declared() -> None:
    people = ceremony.declared_people("Ann", "Ben", ["Cy:auditor", "Dee"])

    assert people == [
        {"name": "Ann", "role": "operator", "identity": "declared"},
        {"name": "Ben", "role": "approver", "identity": "declared"},
        {"name": "Cy", "role": "auditor", "identity": "declared"},
        {"name": "Dee", "role": "witness", "identity": "declared"},
    ]


def test_html_escapes_and_links_nothing() -> None:
    record = ceremony.new_record()
    record["run"] = {"id": "<script>alert(1)</script>", "verdict": "passed"}
    record["people"] = ceremony.declared_people("A & B", "", [])

    page = ceremony.render_html(record)

    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "A &amp; B" in page
    assert "http" not in page


def test_split_knowledge_not_applicable() -> None:
    entry = ceremony.new_record()["split_knowledge"]

    assert entry["applicable"] is False
    assert "CKR_ATTRIBUTE_SENSITIVE" in entry["evidence"]
