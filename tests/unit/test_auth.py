"""Space-scoped access: outsiders are told nothing exists, members are told what they lack."""

from __future__ import annotations

import pytest
from mlplane.auth import Membership, Principal, check_password, hash_password, hash_token
from mlplane.errors import Forbidden, NotFound

MEMBER = Principal(
    "u1", memberships={"s1": Membership("s1", "member", frozenset({"trainings:get"}))}
)


def test_an_outsider_gets_not_found_not_forbidden():
    with pytest.raises(NotFound):
        MEMBER.require("s2")


def test_a_member_without_the_permission_is_forbidden():
    MEMBER.require("s1", "trainings:get")
    with pytest.raises(Forbidden):
        MEMBER.require("s1", "trainings:delete")


def test_only_owners_act_as_owners():
    with pytest.raises(Forbidden):
        MEMBER.require("s1", owner=True)
    Principal("u2", memberships={"s1": Membership("s1", "owner")}).require(
        "s1", "trainings:delete", owner=True
    )


def test_administrators_reach_every_space():
    Principal("admin", admin=True).require("any", "trainings:delete", owner=True)


def test_tokens_are_stored_as_sha256():
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_passwords_are_salted_and_checked():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second
    assert check_password("correct horse", first) and not check_password("wrong", first)
