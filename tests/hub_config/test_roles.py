"""Groups, custom scopes and roles, validated by JupyterHub itself on an in-memory hub."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from jupyterhub import orm, scopes
from jupyterhub.app import JupyterHub

from hub_config.loader import EXAMPLE, load_config
from hub_config.roles import (
    SCOPE_ALLOCATIONS,
    SCOPE_GPU_MAP,
    SCOPE_JOBS,
    SCOPE_JOBS_ADMIN,
    custom_scopes,
    jupyterhub_groups,
    load_roles,
    server_token_scopes,
)

CONFIG = load_config(EXAMPLE)
SERVICE = "ai-console-jobs"


def test_groups() -> None:
    groups = jupyterhub_groups(CONFIG)
    assert groups["project-cs101"]["users"] == [
        "student1",
        "student2",
        "student3",
        "student4",
        "teacher",
    ]
    assert groups["project-cs101"]["properties"]["ai_console_project"] == "cs101"
    assert groups["project-vision-lab"]["users"] == ["researcher"]


def test_role_names_and_members() -> None:
    roles = {role["name"]: role for role in load_roles(CONFIG)}
    assert set(roles) == {
        "admin",
        "ai-console-platform-admin",
        "course-admin-cs101",
        "course-admin-vision-lab",
        "user",
        "ai-console-jobs-service",
    }
    assert roles["admin"] == {"name": "admin", "users": ["admin"]}  # JupyterHub's own scopes
    assert set(roles["ai-console-platform-admin"]["scopes"]) == set(custom_scopes())
    assert roles["course-admin-cs101"]["users"] == ["teacher"]
    assert roles["ai-console-jobs-service"]["services"] == [SERVICE]


def test_no_platform_admins_leaves_the_admin_role_alone() -> None:
    from dataclasses import replace

    roles = load_roles(replace(CONFIG, platform_admins=frozenset()))
    assert "admin" not in [role["name"] for role in roles]


@pytest.fixture
def restore_scope_definitions() -> Iterator[None]:
    """define_custom_scopes changes a module-level table; leave it as other tests found it."""
    saved = dict(scopes.scope_definitions)
    yield
    scopes.scope_definitions.clear()
    scopes.scope_definitions.update(saved)


async def start_hub(roles: list[dict[str, Any]]) -> JupyterHub:
    """A JupyterHub with our groups and these roles loaded by its own start-up code."""
    app = JupyterHub(
        db_url="sqlite://",
        authenticator_class="dummy",
        load_groups=jupyterhub_groups(CONFIG),
        load_roles=roles,
        custom_scopes=custom_scopes(),
    )
    app.log.setLevel(logging.WARNING)
    app.init_db()
    # init_services needs a proxy and a hub URL; the role loader only needs the orm row.
    app.db.add(orm.Service(name=SERVICE))
    app.db.commit()
    # The same steps, in the same order, as JupyterHub.initialize. They run JupyterHub's checks:
    # scope names exist, filters are allowed, role names are valid, the admin role is unchanged.
    await app.init_role_creation()
    await app.init_users()
    await app.init_groups()
    await app.init_role_assignment()
    return app


@pytest.fixture
async def hub(restore_scope_definitions: None) -> AsyncIterator[JupyterHub]:
    app = await start_hub(load_roles(CONFIG, jobs_service_name=SERVICE))
    yield app
    app.db.close()


@pytest.mark.parametrize(
    ("bad_scope", "error"),
    [("custom:ai-console:job!user", "does not exist"), ("read:users!project=x", "filter")],
)
async def test_jupyterhub_validation_is_real(
    restore_scope_definitions: None, bad_scope: str, error: str
) -> None:
    """The same start-up code refuses a misspelt scope or filter, so the tests above mean it."""
    roles = load_roles(CONFIG, jobs_service_name=SERVICE)
    roles[2]["scopes"].append(bad_scope)
    with pytest.raises(KeyError, match=error):
        await start_hub(roles)


def scopes_of(app: JupyterHub, name: str) -> set[str]:
    return scopes.get_scopes_for(orm.User.find(app.db, name))


def allowed(app: JupyterHub, have: Any, scope: str) -> bool:
    return bool(scopes.has_scope(scope, have, db=app.db))


async def test_jupyterhub_accepts_groups_and_roles(hub: JupyterHub) -> None:
    group = orm.Group.find(hub.db, "project-cs101")
    assert group is not None
    assert sorted(u.name for u in group.users) == [
        "student1",
        "student2",
        "student3",
        "student4",
        "teacher",
    ]
    admin = orm.User.find(hub.db, "admin")
    assert admin.admin
    assert {r.name for r in admin.roles} == {"admin", "ai-console-platform-admin", "user"}
    service = orm.Service.find(hub.db, SERVICE)
    assert [r.name for r in service.roles] == ["ai-console-jobs-service"]


async def test_course_admin_sees_only_their_project(hub: JupyterHub) -> None:
    have = scopes_of(hub, "teacher")
    for scope in ("admin:servers", "read:users", SCOPE_JOBS_ADMIN, SCOPE_GPU_MAP):
        assert allowed(hub, have, f"{scope}!user=student1"), scope
        assert not allowed(hub, have, f"{scope}!user=researcher"), scope
    assert allowed(hub, have, f"{SCOPE_JOBS}!user=student2")  # jobs-admin implies jobs
    # Opening a member's server, or changing who is a member, is not theirs to do.
    assert not allowed(hub, have, "access:servers!server=student1/")
    for group in ("project-cs101", "project-vision-lab", "cs101-students"):
        assert not allowed(hub, have, f"groups!group={group}"), group
    assert allowed(hub, have, "read:groups!group=project-cs101")
    assert allowed(hub, have, "read:groups!group=cs101-students")
    assert not allowed(hub, have, SCOPE_ALLOCATIONS)


async def test_course_admin_reaches_members_by_group(hub: JupyterHub) -> None:
    user = orm.User(name="eve")
    group = orm.Group.find(hub.db, "cs101-students") or orm.Group(name="cs101-students")
    group.users.append(user)
    hub.db.add_all([user, group])
    hub.db.commit()
    assert allowed(hub, scopes_of(hub, "teacher"), "admin:servers!user=eve")


async def test_users_and_service(hub: JupyterHub) -> None:
    student = scopes_of(hub, "student1")
    assert f"{SCOPE_JOBS}!user=student1" in student
    assert f"access:services!service={SERVICE}" in student
    assert not allowed(hub, student, f"{SCOPE_JOBS}!user=student2")
    assert not allowed(hub, student, f"{SCOPE_JOBS_ADMIN}!user=student1")
    admin = scopes_of(hub, "admin")
    for scope in custom_scopes():
        assert allowed(hub, admin, f"{scope}!user=student1")
    service = scopes.get_scopes_for(orm.Service.find(hub.db, SERVICE))
    assert SCOPE_ALLOCATIONS in service and "read:users" in service and "read:groups" in service
    assert SCOPE_JOBS_ADMIN not in service


async def test_server_token_scopes_are_granted_for_the_own_user_only(hub: JupyterHub) -> None:
    """Resolve the server token the way User.spawn does, and check nothing is dropped."""
    from jupyterhub import roles

    user = orm.User.find(hub.db, "student1")
    requested = {
        s + "=student1/" if s.endswith("!server") else s for s in server_token_scopes(SERVICE)
    }
    have = roles.roles_to_scopes(roles.get_roles_for(user)) | {"inherit"}
    client = hub.db.query(orm.OAuthClient).filter_by(identifier="jupyterhub").one()
    granted, excluded = scopes._resolve_requested_scopes(requested, have, user, client, hub.db)
    assert excluded == set()
    token = user.new_api_token(scopes=granted)
    token_scopes = scopes.get_scopes_for(orm.APIToken.find(hub.db, token))
    assert allowed(hub, token_scopes, f"{SCOPE_JOBS}!user=student1")
    assert allowed(hub, token_scopes, f"access:services!service={SERVICE}")
    assert not allowed(hub, token_scopes, f"{SCOPE_JOBS}!user=student2")
    assert not allowed(hub, token_scopes, "admin:servers!user=student1")
