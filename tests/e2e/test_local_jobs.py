"""Run notebook as job on the single-machine hub, end to end: the user's server (server
extension), the jobs service (local backend, SQLite), the hub's allocator, the real runner."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import requests

from .conftest import ADMIN_PASSWORD, LocalHub
from .hubclient import HubClient
from .jobs_setup import JOBS_YAML, LabUser, Service, notebook


@pytest.fixture(scope="module")
def jobs_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    tmp = tmp_path_factory.mktemp("jobs-hub")
    config = tmp / "ai-console.yaml"
    config.write_text(JOBS_YAML)
    # The default single-machine hub: accounts of their own, each job as its owner's account.
    hub = LocalHub(tmp, config, demo=False)
    try:
        hub.start()
        yield hub
    finally:
        hub.remove()


@pytest.fixture(scope="module")
def student(jobs_hub: LocalHub) -> LabUser:
    return LabUser(jobs_hub, "student1").start_server()


def allocations(hub: LocalHub) -> list[dict]:
    admin = HubClient(hub.url)
    assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
    gpus = admin.api("GET", "/ai-console/allocations").json()["gpus"]
    return [a for gpu in gpus for a in gpu["allocations"]]


def test_a_notebook_runs_with_its_parameters_and_keeps_log_and_outputs(student: LabUser):
    student.write(
        "work/train.ipynb",
        notebook(
            "print('epochs x lr', epochs * lr)",
            "open('result.txt', 'w').write(name)",
            parameters="epochs = 2\nlr = 0.5\nname = 'demo'",
        ),
    )
    declared = student.call("GET", "parameters", params={"path": "work/train.ipynb"}).json()
    assert declared["parameters"] == [
        {"name": "epochs", "type": "int", "value": 2},
        {"name": "lr", "type": "float", "value": 0.5},
        {"name": "name", "type": "str", "value": "demo"},
    ]
    response = student.submit(
        "work/train.ipynb",
        parameters={"epochs": 10, "name": "from-job"},
        output_formats=["ipynb", "html"],
        tags=["sweep"],
    )
    assert response.status_code == 201, response.text
    submitted = response.json()
    assert submitted["name"].startswith("train-") and submitted["project"] == "cs101"
    # The user edits the notebook after submitting: the job runs the snapshot.
    student.write("work/train.ipynb", notebook("raise SystemExit('edited')"))
    job = student.wait(submitted["job_id"])
    assert job["status"] == "COMPLETED", job
    assert job["progress"] == {"cell": 4, "cells": 4}
    assert job["start_time"] >= job["create_time"] and job["end_time"] >= job["start_time"]
    # It ran where the notebook lives, with the injected values.
    assert (student.home / "work" / "result.txt").read_text() == "from-job"
    # ... as the owner's own OS account, never as the jobs service's root.
    written_by = (student.home / "work" / "result.txt").stat().st_uid
    assert written_by == student.home.stat().st_uid != 0
    log = student.call("GET", f"jobs/{job['job_id']}/log").text
    assert "epochs x lr 5.0" in log
    executed = nbformat.reads(student.call("GET", f"jobs/{job['job_id']}/output").text, 4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "epochs = 10" in injected[0].source
    html = student.call("GET", f"jobs/{job['job_id']}/output", params={"format": "html"})
    assert html.status_code == 200 and "epochs x lr 5.0" in html.text
    # The outputs are files in the user's storage, where Lab opens them.
    assert (student.home / job["output_files"]["ipynb"]).is_file()
    listed = student.call("GET", "jobs", params={"tag": "sweep"}).json()["jobs"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]


def test_a_failing_cell_is_reported_and_marked(student: LabUser):
    student.write("fails.ipynb", notebook("x = 1", "y = 2", "1 / 0", "print('never')"))
    job = student.wait(student.submit("fails.ipynb").json()["job_id"])
    assert job["status"] == "FAILED"
    assert "ZeroDivisionError" in job["status_message"]
    executed = nbformat.reads(student.call("GET", f"jobs/{job['job_id']}/output").text, 4)
    [marked] = [c for c in executed.cells if "ai-console-error" in c.metadata.get("tags", [])]
    assert marked.source == "1 / 0"
    assert "never" not in student.call("GET", f"jobs/{job['job_id']}/log").text


def test_a_job_past_its_timeout_is_stopped(student: LabUser):
    student.write("slow.ipynb", notebook("import time; time.sleep(120)"))
    started = time.monotonic()
    job = student.wait(student.submit("slow.ipynb", timeout_seconds=2).json()["job_id"])
    assert job["status"] == "FAILED" and "timeout" in job["status_message"]
    assert time.monotonic() - started < 30


def test_a_failed_attempt_is_retried(student: LabUser):
    # Fails the first time (no marker yet), succeeds the second.
    student.write(
        "flaky.ipynb",
        notebook(
            "import os\nfirst = not os.path.exists('flaky.marker')\n"
            "open('flaky.marker', 'w').close()\nassert not first, 'first attempt fails'"
        ),
    )
    job = student.wait(student.submit("flaky.ipynb", max_retries=1).json()["job_id"])
    assert job["status"] == "COMPLETED" and job["attempts"] == 2, job


def test_a_double_submit_creates_one_job(student: LabUser):
    student.write("once.ipynb", notebook("print('once')"))
    before = len(student.job_folders())
    first = student.submit("once.ipynb", idempotency_key="dialog-123")
    again = student.submit("once.ipynb", idempotency_key="dialog-123")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["job_id"] == again.json()["job_id"]
    assert len(student.job_folders()) == before + 1  # the second snapshot was removed


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"input_path": "../../etc/passwd.ipynb"}, "input_path", "outside your home"),
        ({"input_path": "notes.txt"}, "input_path", "not a notebook"),
        ({"input_path": "missing.ipynb"}, "input_path", "does not exist"),
        ({"parameters": {"epochs": "ten"}}, "parameters.epochs", "expected int"),
        ({"flavor": "64C-1T-8GPU"}, "flavor", "no flavor"),
        ({"flavor": "8C-32G-1GPU"}, "flavor", "not offered"),
        ({"project": "nlp-lab"}, "project", "cannot be charged"),
        ({"environment": {"CUDA_VISIBLE_DEVICES": "0,1"}}, "environment", "not allowed"),
        ({"timeout_seconds": 10**30}, "timeout_seconds", "whole number"),
        ({"max_retries": 99}, "max_retries", "whole number"),
        ({"image": "pytorch2"}, "image", "does not offer"),
        ({"surprise": 1}, "surprise", "unknown field"),
    ],
)
def test_bad_submissions_name_the_field_and_leave_nothing(student, fields, field, words):
    student.write("good.ipynb", notebook("print(1)", parameters="epochs = 1"))
    (student.home / "notes.txt").write_text("not a notebook")
    before_jobs = [j["job_id"] for j in student.call("GET", "jobs").json()["jobs"]]
    before_folders = student.job_folders()
    response = student.submit("good.ipynb", **{"input_path": "good.ipynb", **fields})
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["field"] == field and words in body["message"], body
    assert [j["job_id"] for j in student.call("GET", "jobs").json()["jobs"]] == before_jobs
    assert student.job_folders() == before_folders
    assert allocations(student.hub) == []


def test_a_gpu_job_holds_its_slice_from_the_hub_and_gives_it_back(student: LabUser):
    student.write("gpu.ipynb", notebook("import os, time; print(os.environ['CUDA_VISIBLE_DEVICES'])"
                                        "; time.sleep(3)"))  # fmt: skip
    job = student.submit("gpu.ipynb", flavor="4C-16G-1/4GPU").json()
    assert job["gpu_slice"]["fraction"] == "1/4" and job["gpu_type"] == "RTX3090"
    [held] = allocations(student.hub)
    assert held["owner"]["kind"] == "job" and held["owner"]["user"] == "student1"
    # cs101's quota is one quarter GPU: a second GPU job is refused while this one runs.
    refused = student.submit("gpu.ipynb", flavor="4C-16G-1/4GPU")
    assert refused.status_code == 403 and refused.json()["field"] == "flavor"
    assert "quota" in refused.json()["message"]
    done = student.wait(job["job_id"])
    assert done["status"] == "COMPLETED"
    assert allocations(student.hub) == []


def test_cancel_stops_the_job_and_keeps_its_record(student: LabUser):
    student.write(
        "long.ipynb", notebook("print('started', flush=True)", "import time; time.sleep(60)")
    )
    job = student.submit("long.ipynb").json()
    student.wait(job["job_id"], until=("IN_PROGRESS",))
    deadline = time.monotonic() + 30
    while "started" not in student.call("GET", f"jobs/{job['job_id']}/log").text:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    cancelled = student.call("DELETE", f"jobs/{job['job_id']}")
    assert cancelled.status_code == 200
    done = student.wait(job["job_id"])
    assert done["status"] == "STOPPED"
    assert "started" in student.call("GET", f"jobs/{job['job_id']}/log").text


def test_jobs_beyond_the_machines_runners_wait_their_turn(student: LabUser):
    """One job per CPU runs at once (LocalBackend.max_running); the rest wait QUEUED, saying
    why, start as runners free up, and one cancelled while waiting never runs."""
    runners = os.cpu_count() or 1
    student.write("nap.ipynb", notebook("import time; time.sleep(3)"))
    ids = [student.submit("nap.ipynb").json()["job_id"] for _ in range(runners + 2)]
    waiting = student.call("GET", f"jobs/{ids[-1]}").json()
    assert waiting["status"] == "QUEUED"
    assert "waiting for a free runner" in waiting["pending_reason"]
    cancelled = student.call("DELETE", f"jobs/{ids[-1]}").json()
    assert cancelled["status"] == "STOPPED", cancelled
    assert cancelled["status_message"] == "cancelled before it started"
    done = [student.wait(job_id, timeout=120) for job_id in ids[:-1]]
    failed = [
        (job["status_message"], student.call("GET", f"jobs/{job['job_id']}/log").text[-2000:])
        for job in done
        if job["status"] != "COMPLETED"
    ]
    assert not failed, failed
    # Never more than `runners` at once: the last one started after one of the first ended.
    first_end = min(job["end_time"] for job in done[:runners])
    assert done[runners]["start_time"] >= first_end
    assert not (student.home / cancelled["snapshot_path"]).with_name("job.log").exists()


def test_rerun_uses_the_snapshot_with_edited_parameters(student: LabUser):
    student.write("sweep.ipynb", notebook("print('value', value)", parameters="value = 1"))
    first = student.wait(student.submit("sweep.ipynb").json()["job_id"])
    student.write("sweep.ipynb", notebook("raise RuntimeError('edited since')"))
    rerun = student.call("POST", f"jobs/{first['job_id']}/rerun", json={"parameters": {"value": 7}})
    assert rerun.status_code == 201, rerun.text
    second = student.wait(rerun.json()["job_id"])
    assert second["status"] == "COMPLETED" and second["rerun_of"] == first["job_id"]
    assert "value 7" in student.call("GET", f"jobs/{second['job_id']}/log").text


def test_the_live_log_streams_while_the_job_runs(student: LabUser):
    student.write(
        "stream.ipynb",
        notebook(
            "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(1)"
        ),
    )
    job = student.submit("stream.ipynb").json()
    response = student.call("GET", f"jobs/{job['job_id']}/log", params={"follow": "1"}, stream=True)
    seen, started = [], time.monotonic()
    for chunk in response.iter_content(chunk_size=None, decode_unicode=True):
        if "tick" in chunk:
            seen.append(time.monotonic() - started)
    text = student.call("GET", f"jobs/{job['job_id']}/log").text
    assert all(f"tick {i}" in text for i in range(3))
    assert len(seen) >= 2 and seen[-1] - seen[0] >= 1  # arrived as printed, not at the end


def test_isolation_between_users_course_admins_and_platform_admins(jobs_hub, student):
    student.write("mine.ipynb", notebook("print('private')"))
    job = student.wait(student.submit("mine.ipynb").json()["job_id"])
    job_id = job["job_id"]
    other, teacher, admin = (Service(jobs_hub, u) for u in ("student2", "teacher", "admin"))
    researcher = Service(jobs_hub, "researcher")
    owner = Service(jobs_hub, "student1")
    for outsider in (other, researcher):
        assert job_id not in [j["job_id"] for j in outsider.call("GET", "jobs").json()["jobs"]]
        for method, path in [
            ("GET", f"jobs/{job_id}"),
            ("GET", f"jobs/{job_id}/log"),
            ("DELETE", f"jobs/{job_id}"),
        ]:
            assert outsider.call(method, path).status_code == 404, (method, path)
    # The course admin of cs101 and the platform admin see it and its log.
    for manager in (teacher, admin, owner):
        assert job_id in [j["job_id"] for j in manager.call("GET", "jobs").json()["jobs"]]
        assert manager.call("GET", f"jobs/{job_id}").json()["owner"] == "student1"
        assert "private" in manager.call("GET", f"jobs/{job_id}/log").text
    assert researcher.call("GET", "jobs").json()["jobs"] == []
    # Calling the service directly, a user cannot point a job at another user's files.
    crafted = researcher.call(
        "POST",
        "jobs",
        json={
            "job_id": "f" * 32,
            "name": "steal",
            "input_path": "x.ipynb",
            "snapshot_path": f"../student1/.ai-console/jobs/{job_id}/input.ipynb",
            "flavor": "2C-4G",
        },
    )
    assert crafted.status_code == 400 and crafted.json()["field"] == "snapshot_path"
    anonymous = requests.get(f"{owner.base}/jobs", timeout=30, allow_redirects=False)
    assert anonymous.status_code in (302, 401, 403)
    forged = requests.get(
        f"{owner.base}/jobs", headers={"Authorization": "token forged"}, timeout=30
    )
    assert forged.status_code in (401, 403)


def test_jobs_survive_the_users_server_and_a_hub_restart(jobs_hub: LocalHub, student: LabUser):
    student.write("survivor.ipynb", notebook("import time; time.sleep(6)", "print('survived')"))
    job = student.submit("survivor.ipynb").json()
    student.wait(job["job_id"], until=("IN_PROGRESS",))
    student.stop_server()
    jobs_hub.stop()  # the hub, its proxy and the jobs service all stop; the job does not
    jobs_hub.start()
    again = LabUser(jobs_hub, "student1").start_server()
    done = again.wait(job["job_id"], timeout=60)
    assert done["status"] == "COMPLETED", done
    assert "survived" in again.call("GET", f"jobs/{job['job_id']}/log").text
    records = again.call("GET", "jobs").json()["jobs"]
    assert len(records) >= 2  # every earlier record is still there
    status = json.loads(
        Path(again.home / done["snapshot_path"]).with_name("status.json").read_text()
    )
    assert status["state"] == "completed"


def test_a_job_of_a_flavor_with_two_types_runs_where_the_allocator_places_it(jobs_hub: LocalHub):
    researcher = LabUser(jobs_hub, "researcher").start_server()
    flavors = {f["name"]: f for f in researcher.call("GET", "flavors").json()["flavors"]}
    whole = flavors["8C-32G-1GPU"]
    assert whole["gpu_types"] == ["RTX3090", "A100"] and whole["gpu"]["any_type"] is True
    researcher.write(
        "any.ipynb",
        notebook("import os, time; print('on', os.environ['AI_CONSOLE_GPU_TYPE']); time.sleep(3)"),
    )
    # No GPU type: any of the flavor's. The hub has one GPU of each, so the second job goes to
    # the type the first left free, and each record names the type it got.
    jobs = [researcher.submit("any.ipynb", flavor="8C-32G-1GPU") for _ in range(2)]
    assert [r.status_code for r in jobs] == [201, 201], [r.text for r in jobs]
    jobs = [r.json() for r in jobs]
    assert {j["gpu_type"] for j in jobs} == {"RTX3090", "A100"}
    assert all(j["gpu_slice"]["gpu_type"] == j["gpu_type"] for j in jobs)
    # Both GPUs are held now: a third is refused for want of a GPU, not for its missing type.
    full = researcher.submit("any.ipynb", flavor="8C-32G-1GPU")
    assert full.status_code == 409 and full.json()["field"] == "gpu_type", full.text
    for job in jobs:
        done = researcher.wait(job["job_id"])
        assert done["status"] == "COMPLETED", done
        log = researcher.call("GET", f"jobs/{job['job_id']}/log").text
        assert f"on {job['gpu_type']}" in log
    assert allocations(jobs_hub) == []
    # A re-run leaves the type to the allocator again: with the first run's GPU taken, it
    # runs on the other one.
    first = jobs[0]
    assert first["gpu_slice"]["any_type"] is True
    blocker = researcher.submit("any.ipynb", flavor="8C-32G-1GPU", gpu_type=first["gpu_type"])
    assert blocker.status_code == 201, blocker.text
    rerun = researcher.call("POST", f"jobs/{first['job_id']}/rerun", json={})
    assert rerun.status_code == 201, rerun.text
    assert rerun.json()["gpu_type"] != first["gpu_type"]
    for job in (blocker.json(), rerun.json()):
        assert researcher.wait(job["job_id"])["status"] == "COMPLETED"
    assert allocations(jobs_hub) == []
