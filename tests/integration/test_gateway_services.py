"""The gateway's use cases against an in-memory kernel (SQLite in the test's folder, the
in-process bus), without HTTP: inviting, accepting an invite, logging in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from mlplane import aggregates
from mlplane.auth import Principal
from mlplane.errors import Conflict, Forbidden, NotFound, Unauthorized
from mlplane.eventlog import Context
from mlplane.kernel import Kernel
from mlplane.settings import Settings

from services.gateway import commands as c
from services.gateway import services
from services.gateway.bootstrap import SERVICE
from services.gateway.handlers import SPACES, InviteExpired, user_id_for
from services.gateway.projections import TOKENS
from services.gateway.projections import USERS as USER_DOCS
from services.gateway.throttle import THROTTLE, LoginThrottle

OWNER = user_id_for("owner")
CTX = Context(actor=OWNER, source="test")


@pytest.fixture
async def kernel(tmp_path) -> AsyncIterator[Kernel]:
    kernel = Kernel.open(Settings(home=tmp_path, _env_file=None))
    kernel.add_projections(SERVICE.projections())
    kernel.add_commands(SERVICE.commands())
    try:
        await kernel.execute(c.RegisterUser(user_id=OWNER, name="owner"), CTX)
        await kernel.execute(
            c.CreateSpace(space_id="s1", name="vision", description="", owner_id=OWNER), CTX
        )
        yield kernel
    finally:
        await kernel.stop()


async def invite(kernel: Kernel, email: str = "ada@example.com", **options) -> str:
    [issued] = await services.invite_users(
        kernel, "s1", [email], ["endpoints:read"], CTX, **options
    )
    return issued.token


def signed_in(user_id: str) -> Principal:
    return Principal(user_id=user_id, admin=False, memberships={})


async def test_inviting_the_same_address_twice_in_one_call_makes_one_invite(kernel):
    issued = await services.invite_users(
        kernel, "s1", ["Ada@example.com", " ada@example.com"], [], CTX
    )
    assert [i.email for i in issued] == ["ada@example.com"]
    assert issued[0].user_id == user_id_for("ada@example.com")


async def test_a_new_invitee_becomes_a_user_a_member_and_gets_a_first_token(kernel):
    token = await invite(kernel)
    done = await services.accept_invite(kernel, token, None, Context(source="test"))
    ada = user_id_for("ada@example.com")
    assert (done.space_id, done.user.id, done.permissions) == ("s1", ada, ["endpoints:read"])
    assert done.token is not None
    assert (await kernel.docs.get(USER_DOCS, ada))["email"] == "ada@example.com"
    tokens = await kernel.docs.query(TOKENS, {"user_id": ada})
    assert [t["name"] for t in tokens.data] == ["invite"]
    space, _ = await aggregates.load(kernel.log, SPACES, "s1")
    assert space.members[ada] == ["endpoints:read"]


async def test_an_existing_invitee_accepts_with_their_own_token_and_gets_no_new_one(kernel):
    ada = user_id_for("ada@example.com")
    await kernel.execute(c.RegisterUser(user_id=ada, name="ada@example.com"), CTX)
    token = await invite(kernel)
    with pytest.raises(Forbidden, match="existing user"):
        await services.accept_invite(kernel, token, None, Context(source="test"))
    done = await services.accept_invite(kernel, token, signed_in(ada), Context(source="test"))
    assert done.token is None
    assert done.permissions == ["endpoints:read"]


async def test_only_the_invitee_accepts_and_nothing_is_written_for_another_caller(kernel):
    token = await invite(kernel)
    with pytest.raises(Forbidden, match="another user"):
        await services.accept_invite(kernel, token, signed_in(OWNER), Context(source="test"))
    ada = user_id_for("ada@example.com")
    assert await kernel.docs.get(USER_DOCS, ada) is None
    space, _ = await aggregates.load(kernel.log, SPACES, "s1")
    assert ada not in space.members


async def test_an_invite_is_accepted_once(kernel):
    token = await invite(kernel)
    await services.accept_invite(kernel, token, None, Context(source="test"))
    ada = user_id_for("ada@example.com")
    with pytest.raises(Conflict):
        await services.accept_invite(kernel, token, signed_in(ada), Context(source="test"))


async def test_an_expired_invite_is_refused_before_anything_is_written(kernel):
    token = await invite(kernel, now=datetime.now(UTC) - timedelta(days=8))
    with pytest.raises(InviteExpired):
        await services.accept_invite(kernel, token, None, Context(source="test"))
    assert await kernel.docs.get(USER_DOCS, user_id_for("ada@example.com")) is None


@pytest.mark.parametrize("token", ["nonsense", "inv_s1.nope.secret", "inv_other.x.y"])
async def test_a_token_that_names_no_invite_is_not_found(kernel, token):
    await invite(kernel)
    with pytest.raises(NotFound):
        await services.accept_invite(kernel, token, None, Context(source="test"))


async def test_a_tampered_invite_secret_is_not_found(kernel):
    token = await invite(kernel)
    with pytest.raises(NotFound):
        await services.accept_invite(kernel, token[:-2] + "xx", None, Context(source="test"))


async def test_login_issues_a_token_for_the_right_password_only(kernel):
    from mlplane.auth import hash_password

    from services.gateway.settings import GatewaySettings

    kernel.extensions[THROTTLE] = LoginThrottle.from_settings(GatewaySettings())
    ada = user_id_for("ada")
    await kernel.execute(
        c.RegisterUser(user_id=ada, name="ada", password_hash=hash_password("correct horse")),
        CTX,
    )
    with pytest.raises(Unauthorized):
        await services.login(kernel, "ada", "wrong", "10.0.0.1", Context(source="test"))
    with pytest.raises(Unauthorized):
        await services.login(kernel, "nobody", "correct horse", "10.0.0.1", Context())
    secret, command = await services.login(
        kernel, "ada", "correct horse", "10.0.0.1", Context(source="test")
    )
    assert secret and command.user_id == ada and command.name == "login"
    assert (await kernel.docs.get(USER_DOCS, ada))["tokens"][command.token_id]["name"] == "login"
