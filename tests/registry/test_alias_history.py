"""Alias history: rollback returns to the version the alias held before the current one."""

from __future__ import annotations

from mlgate.registry.aliases import alias_stack


def entry(version: str, action: str = "promote", alias: str = "production") -> dict[str, str]:
    return {"alias": alias, "version": version, "action": action}


def test_promotions_stack_up_and_other_aliases_do_not_interfere():
    history = [entry("1"), entry("2", alias="staging"), entry("2"), entry("3")]
    assert alias_stack(history, "production") == ["1", "2", "3"]


def test_each_rollback_steps_one_further_back():
    history = [entry("1"), entry("2"), entry("3"), entry("2", "rollback")]
    assert alias_stack(history, "production") == ["1", "2"]
    history.append(entry("1", "rollback"))
    assert alias_stack(history, "production") == ["1"]


def test_promoting_the_same_version_twice_is_one_step():
    assert alias_stack([entry("1"), entry("1"), entry("2")], "production") == ["1", "2"]


def test_model_references_are_parsed_before_any_network():
    import pytest

    from mlgate.errors import MlgateError
    from mlgate.registry.aliases import parse_ref

    assert parse_ref("credit-risk@production", "x") == ("credit-risk", "production", None)
    assert parse_ref("@staging", "credit-risk") == ("credit-risk", "staging", None)
    assert parse_ref("credit-risk/3", "x") == ("credit-risk", None, "3")
    for bad in ("credit-risk", "credit-risk@", "credit-risk/v3"):
        with pytest.raises(MlgateError, match="expected NAME@ALIAS or NAME/VERSION"):
            parse_ref(bad, "x")
