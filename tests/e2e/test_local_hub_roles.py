"""Who may do what to whose server, on a real hub (`ai-console up`, the shipped example YAML).

student1 is in cs101. The matrix: a classmate (student2), a student of another project
(researcher), cs101's course admin (teacher) and the platform admin, each trying to read,
start, stop and open student1's server and to add someone to cs101's group. A course admin
sees, starts and stops members' servers, but neither opens them (that runs code as the member)
nor changes who is a member: membership comes from the YAML.
"""

from __future__ import annotations

import requests

from .conftest import ADMIN_PASSWORD, PASSWORD, LocalHub
from .hubclient import HubClient

TARGET = "student1"
ACTORS = {"student2": PASSWORD, "researcher": PASSWORD, "teacher": PASSWORD}
ACTORS["admin"] = ADMIN_PASSWORD
#: actor -> (read, start, stop, open, add to the group) allowed on student1
EXPECTED = {
    "student2": (False, False, False, False, False),
    "researcher": (False, False, False, False, False),
    "teacher": (True, True, True, False, False),
    "admin": (True, True, True, True, True),
}


def logged_in(hub: LocalHub, name: str) -> HubClient:
    client = HubClient(hub.url)
    assert client.login(name, ACTORS.get(name, PASSWORD)).status_code == 302, name
    return client


def refused(response: requests.Response) -> bool:
    return response.status_code in (403, 404)


def opened_as(response: requests.Response) -> bool:
    """Whether the hub let the actor in: the server's answer, or the hub's page asking an
    admin to confirm access to someone else's server (a 403 page otherwise)."""
    return response.status_code == 200


def server_state(admin: HubClient) -> dict:
    return admin.api("GET", f"/users/{TARGET}").json().get("servers", {}).get("", {})


def test_the_roles_matrix_on_a_real_hub(local_hub: LocalHub):
    admin = logged_in(local_hub, "admin")
    logged_in(local_hub, TARGET)  # the hub knows student1 once they have logged in
    seen: dict[str, tuple[bool, ...]] = {}
    for name in EXPECTED:
        actor = admin if name == "admin" else logged_in(local_hub, name)
        read = actor.api("GET", f"/users/{TARGET}")
        started = actor.api("POST", f"/users/{TARGET}/server", json={"profile": "cpu-only"})
        if not refused(started):
            assert started.status_code in (201, 202), (name, started.text)
            admin.wait_for_server(TARGET)
        else:  # start it for the next checks, as the platform admin
            assert admin.api("POST", f"/users/{TARGET}/server", json={"profile": "cpu-only"}).ok
            admin.wait_for_server(TARGET)
        assert server_state(admin).get("ready"), "student1's server should be running now"
        opened = actor.open_server(TARGET, "lab")
        stopped = actor.api("DELETE", f"/users/{TARGET}/server")
        if refused(stopped):
            assert server_state(admin).get("ready"), f"{name}'s refused stop stopped it"
            admin.api("DELETE", f"/users/{TARGET}/server")
        admin.wait_for_server(TARGET)
        assert not server_state(admin), f"student1's server still runs after {name}'s turn"
        outsider = {"users": ["researcher"]}  # of vision-lab, not cs101
        added = actor.api("POST", "/groups/project-cs101/users", json=outsider)
        if added.ok:
            admin.api("DELETE", "/groups/project-cs101/users", json=outsider)
        seen[name] = (
            read.status_code == 200,
            not refused(started),
            not refused(stopped),
            opened_as(opened),
            added.ok,
        )
    assert seen == EXPECTED


def test_a_course_admin_cannot_take_over_the_platform_admin(local_hub: LocalHub):
    """The takeover the review found: put the platform admin into one's own course, then
    manage their server. The first step is refused, so the second is too."""
    admin = logged_in(local_hub, "admin")
    teacher = logged_in(local_hub, "teacher")
    joined = teacher.api("POST", "/groups/project-cs101/users", json={"users": ["admin"]})
    assert refused(joined), joined.text
    assert "admin" not in admin.api("GET", "/groups/project-cs101").json()["users"]
    assert refused(teacher.api("POST", "/users/admin/server", json={"profile": "cpu-only"}))
    assert refused(teacher.api("DELETE", "/users/admin/server"))
    assert refused(teacher.api("GET", "/users/admin"))
