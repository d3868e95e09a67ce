"""Profiles that accept several GPU types, or any GPU with enough memory, on the single-machine
hub with simulated GPUs (one RTX3090 of 24 GiB on gpu-01, one A100 of 80 GiB on gpu-02)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ADMIN_PASSWORD, PASSWORD, LocalHub
from .hubclient import HubClient

TYPES_YAML = """
platform_admins: [admin]
images:
  pytorch: {display_name: PyTorch, image: quay.io/jupyter/pytorch-notebook:latest}
projects:
  lab:
    display_name: GPU lab
    kind: lab
    members: {users: [ann, ben, cat, dan]}
profiles:
  - display_name: One whole RTX 3090
    slug: rtx
    image: pytorch
    gpu: {fraction: 1, type: RTX3090}
  - display_name: Half of an RTX 3090 or an A100
    slug: either
    image: pytorch
    gpu: {fraction: 1/2, types: [RTX3090, A100]}
  - display_name: A quarter of any GPU with 32 GiB
    slug: big
    image: pytorch
    gpu: {fraction: 1/4, type: any, min_memory: 32GiB}
  - display_name: A quarter of any GPU with 100 GiB
    slug: huge
    image: pytorch
    gpu: {fraction: 1/4, type: any, min_memory: 100GiB}
"""


@pytest.fixture
def hub_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "ai-console.yaml"
    path.write_text(TYPES_YAML)
    return path


def user(hub: LocalHub, name: str) -> HubClient:
    client = HubClient(hub.url)
    assert client.login(name, PASSWORD).status_code == 302
    return client


def reserved(client: HubClient, name: str) -> str:
    return next((m for m in client.progress_messages(name) if m.startswith("Reserved")), "")


def test_several_types_and_any_gpu_with_enough_memory(local_hub: LocalHub):
    ann, ben, cat, dan = (user(local_hub, n) for n in ("ann", "ben", "cat", "dan"))
    # Ann takes the one RTX3090 whole.
    assert ann.spawn("ann", "rtx").status_code == 302
    assert reserved(ann, "ann").startswith("Reserved 1 x RTX3090"), local_hub.logs()[-3000:]

    # Ben's form counts the halves free on either type: the A100's two.
    form = ben.spawn_form()
    assert "1/2 of RTX3090 or A100" in form and "2 free now" in form, form
    assert "1/4 of any GPU (32 GiB or more)" in form
    assert "none free now: this hub has no GPU with 100 GiB or more" in form
    options = ben.api("GET", "/ai-console/spawn-options").json()
    either = next(p for p in options["profiles"] if p["slug"] == "either")
    assert (either["free"], either["slice"]) == (2, "1/2 of RTX3090 or A100")

    # With the RTX3090 full, "RTX3090 or A100" starts on the A100.
    assert ben.spawn("ben", "either").status_code == 302
    assert reserved(ben, "ben").startswith("Reserved 1/2 of A100"), local_hub.logs()[-3000:]
    # "Any GPU with 32 GiB" is the A100 too, never the RTX3090's 24 GiB.
    assert cat.spawn("cat", "big").status_code == 302
    assert reserved(cat, "cat").startswith("Reserved 1/4 of A100"), local_hub.logs()[-3000:]

    admin = HubClient(local_hub.url)
    assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
    gpus = {g["gpu_type"]: g for g in admin.api("GET", "/ai-console/allocations").json()["gpus"]}
    held = {a["owner"]["user"]: a["fraction"] for a in gpus["A100"]["allocations"]}
    assert held == {"ben": "1/2", "cat": "1/4"}

    # No GPU has 100 GiB: the spawn is refused, naming what it needs and what there is.
    dan.spawn("dan", "huge")
    message = " ".join(dan.progress_messages("dan"))
    assert "This needs 1/4 of any GPU (100 GiB or more), and this hub has no such GPU" in message
    assert "(its GPUs: A100 80 GiB, RTX3090 24 GiB)" in message, message
    # In the language of a browser that prefers Traditional Chinese.
    dan.session.headers["Accept-Language"] = "zh-TW,zh;q=0.9"
    dan.spawn("dan", "huge")
    message = " ".join(dan.progress_messages("dan"))
    assert "這需要 任一 GPU（100 GiB 以上） 的 1/4" in message, message

    for client, name in ((ann, "ann"), (ben, "ben"), (cat, "cat")):
        client.api("DELETE", f"/users/{name}/server")
