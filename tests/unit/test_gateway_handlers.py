"""The gateway's decisions, pure: a state folded from past events, a command, the events decided."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mlplane.auth import hash_token
from mlplane.errors import Conflict, NotFound
from mlplane.events import Envelope, Event

from services.gateway import commands as c
from services.gateway import events as e
from services.gateway.handlers import SPACES, USERS, InviteExpired, decide, user_id_for
from services.gateway.projections import Memberships, Tokens

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OWNER, BOB = "u-owner", user_id_for("bob@example.com")


def envelopes(stream: str, events: list[Event], actor: str = OWNER) -> list[Envelope]:
    return [
        Envelope(
            id=f"{stream}-{i}",
            type=ev.type_name,
            stream_id=stream,
            data=ev,
            version=i,
            position=i,
            time=NOW + timedelta(seconds=i),
            actor=actor,
        )
        for i, ev in enumerate(events, start=1)
    ]


def space(*events: Event):
    return SPACES.fold(envelopes("space:s1", list(events)))


def user(*events: Event):
    return USERS.fold(envelopes(f"user:{BOB}", list(events)))


CREATED = e.SpaceCreated(space_id="s1", name="vision", description="cv team", owner_id=OWNER)
INVITED = e.UserInvited(
    space_id="s1",
    invite_id="i1",
    user_id=BOB,
    email="bob@example.com",
    permissions=["trainings:get"],
    token_hash=hash_token("secret"),
    expires_at=NOW + timedelta(days=7),
)
ACCEPT = c.AcceptInvite(space_id="s1", invite_id="i1", token_hash=hash_token("secret"), now=NOW)
REGISTERED = e.UserRegistered(user_id=BOB, name="bob@example.com", email="bob@example.com")
ISSUED = e.TokenIssued(user_id=BOB, token_id="t1", token_hash="h1")


def test_creating_a_space_makes_its_creator_its_owner():
    events = decide(
        space(), c.CreateSpace(space_id="s1", name="vision", description="cv team", owner_id=OWNER)
    )
    state = space(*events)
    assert (state.name, state.owner_id, state.created_by) == ("vision", OWNER, OWNER)
    assert state.members == {OWNER: []}


def test_a_space_id_is_taken_once():
    with pytest.raises(Conflict):
        decide(
            space(CREATED), c.CreateSpace(space_id="s1", name="x", description="", owner_id=OWNER)
        )


def test_an_update_that_changes_nothing_decides_nothing():
    assert decide(space(CREATED), c.UpdateSpace(space_id="s1", name="vision")) == []


def test_an_update_carries_only_what_changed():
    [event] = decide(space(CREATED), c.UpdateSpace(space_id="s1", name="vision", description="new"))
    assert (event.name, event.description) == (None, "new")


def test_a_deleted_space_cannot_be_updated_or_deleted_again():
    deleted = space(CREATED, e.SpaceDeleted(space_id="s1"))
    with pytest.raises(NotFound):
        decide(deleted, c.UpdateSpace(space_id="s1", name="other"))
    with pytest.raises(NotFound):
        decide(deleted, c.DeleteSpace(space_id="s1"))


def test_a_deleted_space_is_restored_and_a_live_one_is_left_alone():
    deleted = space(CREATED, e.SpaceDeleted(space_id="s1"))
    assert decide(deleted, c.RestoreSpace(space_id="s1")) == [e.SpaceRestored(space_id="s1")]
    assert decide(space(CREATED), c.RestoreSpace(space_id="s1")) == []


def test_an_unknown_space_cannot_be_restored():
    with pytest.raises(NotFound):
        decide(space(), c.RestoreSpace(space_id="s1"))


def test_an_invite_names_the_user_its_email_will_become():
    invitation = c.Invitation(
        invite_id="i1",
        user_id=user_id_for("Bob@Example.com "),
        email="bob@example.com",
        token_hash="h",
    )
    [event] = decide(
        space(CREATED),
        c.InviteUsers(
            space_id="s1",
            invitations=[invitation],
            permissions=["trainings:get", "trainings:get"],
            expires_at=NOW,
        ),
    )
    assert event.user_id == BOB
    assert event.permissions == ["trainings:get"]


def test_accepting_an_invite_makes_the_invitee_a_member_with_its_permissions():
    events = decide(space(CREATED, INVITED), ACCEPT)
    assert events == [
        e.InviteAccepted(space_id="s1", invite_id="i1", user_id=BOB, permissions=["trainings:get"])
    ]
    assert space(CREATED, INVITED, *events).members[BOB] == ["trainings:get"]


def test_an_invite_is_accepted_once():
    accepted = e.InviteAccepted(space_id="s1", invite_id="i1", user_id=BOB, permissions=[])
    with pytest.raises(Conflict):
        decide(space(CREATED, INVITED, accepted), ACCEPT)


def test_an_expired_invite_is_refused():
    with pytest.raises(InviteExpired):
        decide(space(CREATED, INVITED), ACCEPT.model_copy(update={"now": NOW + timedelta(days=8)}))


def test_an_invite_with_the_wrong_secret_does_not_exist():
    with pytest.raises(NotFound):
        decide(
            space(CREATED, INVITED), ACCEPT.model_copy(update={"token_hash": hash_token("guess")})
        )


def test_an_invite_to_a_deleted_space_cannot_be_accepted():
    with pytest.raises(NotFound):
        decide(space(CREATED, INVITED, e.SpaceDeleted(space_id="s1")), ACCEPT)


def test_permissions_are_granted_to_members_only():
    with pytest.raises(NotFound):
        decide(
            space(CREATED),
            c.GrantPermissions(space_id="s1", user_id=BOB, permissions=["trainings:get"]),
        )


def test_granting_permissions_already_held_decides_nothing():
    member = space(CREATED, INVITED, *decide(space(CREATED, INVITED), ACCEPT))
    grant = c.GrantPermissions(
        space_id="s1", user_id=BOB, permissions=["trainings:get", "benchmarks:list"]
    )
    assert decide(member, grant) == [
        e.PermissionGranted(space_id="s1", user_id=BOB, permissions=["benchmarks:list"])
    ]
    assert decide(member, grant.model_copy(update={"permissions": ["trainings:get"]})) == []


def test_a_user_name_is_registered_once_and_again_after_deletion():
    register = c.RegisterUser(user_id=BOB, name="bob@example.com")
    with pytest.raises(Conflict):
        decide(user(REGISTERED), register)
    assert decide(user(REGISTERED, e.UserDeleted(user_id=BOB)), register)


def test_user_ids_ignore_case_and_surrounding_space():
    assert user_id_for(" Bob@Example.COM") == BOB != user_id_for("alice@example.com")


def test_a_deleted_user_cannot_get_tokens():
    with pytest.raises(NotFound):
        decide(
            user(REGISTERED, e.UserDeleted(user_id=BOB)),
            c.IssueToken(user_id=BOB, token_id="t2", token_hash="h2"),
        )


def test_revoking_names_the_token_hash_and_happens_once():
    [event] = decide(user(REGISTERED, ISSUED), c.RevokeToken(user_id=BOB, token_id="t1"))
    assert event.token_hash == "h1"
    assert decide(user(REGISTERED, ISSUED, event), c.RevokeToken(user_id=BOB, token_id="t1")) == []


def test_an_unknown_token_cannot_be_revoked():
    with pytest.raises(NotFound):
        decide(user(REGISTERED), c.RevokeToken(user_id=BOB, token_id="nope"))


def test_only_changed_profile_fields_are_recorded():
    assert decide(user(REGISTERED), c.UpdateUser(user_id=BOB, role="developer")) == []
    [event] = decide(user(REGISTERED), c.UpdateUser(user_id=BOB, role="designer", first_name="Bob"))
    assert (event.role, event.first_name, event.last_name) == ("designer", "Bob", None)


def test_the_memberships_projection_folds_owner_and_invitee():
    projection, envs = (
        Memberships(),
        envelopes("space:s1", [CREATED, INVITED, *decide(space(CREATED, INVITED), ACCEPT)]),
    )
    owner = projection.evolve(None, envs[0])
    bob = projection.evolve(None, envs[2])
    assert (projection.key(envs[0]), owner["role"]) == (f"s1:{OWNER}", "owner")
    assert (projection.key(envs[2]), bob["role"], bob["permissions"]) == (
        f"s1:{BOB}",
        "member",
        ["trainings:get"],
    )


def test_the_tokens_projection_marks_a_revoked_token():
    revoked = e.TokenRevoked(user_id=BOB, token_id="t1", token_hash="h1")
    projection, (issued, gone) = Tokens(), envelopes(f"user:{BOB}", [ISSUED, revoked])
    doc = projection.evolve(None, issued)
    assert projection.key(gone) == projection.key(issued) == "h1"
    assert projection.evolve(doc, gone)["revoked"] is True
