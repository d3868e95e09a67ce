"""Hub-side rules of the single-machine hub: crafted spawns, project quotas, the allocation API."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ADMIN_PASSWORD, PASSWORD, LocalHub
from .hubclient import HubClient

QUOTA_YAML = """
platform_admins: [admin]
images:
  pytorch: {display_name: PyTorch, image: quay.io/jupyter/pytorch-notebook:latest}
projects:
  tiny:
    display_name: Tiny course
    members: {users: [ann, ben]}
    gpu_quota: 1/4
profiles:
  - display_name: PyTorch, 1/4 RTX 3090
    slug: quarter
    image: pytorch
    projects: [tiny]
    gpu: {fraction: 1/4, type: RTX3090}
  - display_name: PyTorch, 1 x A100
    slug: a100
    image: pytorch
    projects: [tiny]
    gpu: {fraction: 1, type: A100}
"""


@pytest.fixture
def hub_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "ai-console.yaml"
    path.write_text(QUOTA_YAML)
    return path


def failure(client: HubClient, user: str) -> str:
    return " ".join(client.progress_messages(user))


def test_project_quota_is_checked_at_spawn(local_hub: LocalHub):
    ann, ben = HubClient(local_hub.url), HubClient(local_hub.url)
    ann.login("ann", PASSWORD)
    ben.login("ben", PASSWORD)
    ann.spawn("ann", "quarter")
    assert ann.wait_for_server("ann").get("ready"), local_hub.logs()[-3000:]
    ben.spawn("ben", "quarter")
    message = failure(ben, "ben")
    # Named as the student sees it, one number format, and what the student can do.
    assert "Tiny course already uses 1/4 of its 1/4 GPU" in message, message
    assert "ask its course admin for more quota" in message, message
    # The same refusal for a browser that prefers Traditional Chinese.
    ben.session.headers["Accept-Language"] = "zh-TW,zh;q=0.9,en;q=0.5"
    ben.spawn("ben", "quarter")
    message = failure(ben, "ben")
    assert "Tiny course 已使用其 1/4 GPU 中的 1/4；" in message, message
    assert "向其課程管理員申請更多配額" in message, message
    del ben.session.headers["Accept-Language"]
    # A whole A100 is over the quota of 1/4 on its own.
    ann.api("DELETE", "/users/ann/server")
    ann.wait_for_server("ann")
    ann.spawn("ann", "a100")
    assert "quota" in failure(ann, "ann")


def test_crafted_profile_is_refused(local_hub: LocalHub):
    ann = HubClient(local_hub.url)
    ann.login("ann", PASSWORD)
    response = ann.api("POST", "/users/ann/server", json={"profile": "no-such-profile"})
    assert response.status_code == 400
    message = response.json()["message"]
    # The offered profiles by the names the spawn form shows, not by slug.
    assert "no-such-profile" in message and '"PyTorch, 1/4 RTX 3090"' in message, message


def test_allocation_api_reserve_commit_release(local_hub: LocalHub):
    admin = HubClient(local_hub.url)
    assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
    body = {
        "gpu_type": "RTX3090",
        "fraction": "1/2",
        "owner": {"kind": "job", "user": "ann", "project": "", "name": "train"},
    }
    # A project's quota holds here too (tiny has 1/4 of a GPU), checked with the placement.
    over = {**body, "owner": {**body["owner"], "project": "tiny"}}
    refused = admin.api("POST", "/ai-console/allocations", json=over)
    assert refused.status_code == 409 and "quota" in refused.json()["message"], refused.text
    for field, value in (("cpu_millis", 10**30), ("host_memory_mib", -1), ("node", "n" * 300)):
        bad = admin.api("POST", "/ai-console/allocations", json={**body, field: value})
        assert bad.status_code == 400 and field in bad.json()["message"], (field, bad.text)
    for field, value in (("project", {"slug": "tiny"}), ("name", ["x"]), ("user", "u" * 300)):
        bad_owner = {**body, "owner": {**body["owner"], field: value}}
        bad = admin.api("POST", "/ai-console/allocations", json=bad_owner)
        assert bad.status_code == 400 and f"owner.{field}" in bad.json()["message"], bad.text
    reserved = admin.api("POST", "/ai-console/allocations", json=body)
    assert reserved.status_code == 201, reserved.text
    allocation = reserved.json()
    assert allocation["fraction"] == "1/2" and allocation["owner"]["kind"] == "job"
    assert allocation["annotations"]["ai-console/allocation"] == allocation["id"]
    assert len(allocation["id"]) == 20 and not allocation["id"].isdigit()  # random, not counted
    committed = admin.api("POST", f"/ai-console/allocations/{allocation['id']}/commit")
    assert committed.status_code == 200
    assert admin.api("POST", "/ai-console/allocations/nope/commit").status_code == 404

    too_big = admin.api("POST", "/ai-console/allocations", json={**body, "fraction": "3/4"})
    assert too_big.status_code == 409
    assert "no RTX3090 has 3/4 free" in too_big.json()["message"]
    bad = admin.api("POST", "/ai-console/allocations", json={**body, "fraction": "5/4"})
    assert bad.status_code == 400 and "fraction" in bad.json()["message"]
    unknown = admin.api("POST", "/ai-console/allocations", json={**body, "gpus": 1})
    assert unknown.status_code == 400 and "gpus" in unknown.json()["message"]

    released = admin.api("DELETE", f"/ai-console/allocations/{allocation['id']}")
    assert released.json() == {"id": allocation["id"], "released": True}
    again = admin.api("DELETE", f"/ai-console/allocations/{allocation['id']}")
    assert again.json()["released"] is False
    gpus = admin.api("GET", "/ai-console/allocations").json()["gpus"]
    assert all(g["allocations"] == [] for g in gpus)
