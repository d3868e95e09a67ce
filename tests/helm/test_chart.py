"""The Helm chart with a real Helm binary: lint and render for several value sets, every object
valid for the pinned Kubernetes release (strict: no unknown field), least privilege exactly as
the RBAC files the control-plane tests hold the components to, and bad values refused."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hub_config.loader import EXAMPLE

from .binary import ensure

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ai-console"
RBAC = ROOT / "hub_config" / "kubernetes"
KUBERNETES = "1.37.0"  # the pinned control plane is v1.37.2; the schemas are per minor
NAMESPACE = "campus"
#: The kinds with no namespace: RBAC's cluster roles and the agent's node policy.
CLUSTER_KINDS = (
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "mps": ["--set", "mps.enabled=true"],
    "postgresql": ["--set", "jobs.db.existingSecret=jobs-db"],
    "no-gpu-nodes": ["--set", "agent.enabled=false", "--set", "networkPolicy.enabled=false"],
    "no-jobs": ["--set", "jobs.enabled=false"],
    "no-storage": ["--set", "singleuser.storage.type=none"],
    "z2jh-style": [
        "--set-json",
        f"aiConsole={json.dumps(yaml.safe_load(EXAMPLE.read_text()))}",
        "--set",
        "proxy.service.type=ClusterIP",
        "--set-string",
        "hub.extraConfig=c.JupyterHub.concurrent_spawn_limit = 50",
    ],
}


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ensure()), *args], capture_output=True, text=True, timeout=120)


def render(*values: str) -> list[dict[str, Any]]:
    done = helm("template", "ai-console", str(CHART), "--namespace", NAMESPACE, *values)
    assert done.returncode == 0, done.stderr
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def rules_of(file: str) -> dict[str, list]:
    return {o["metadata"]["name"]: o["rules"] for o in yaml.safe_load((RBAC / file).read_text())}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_chart_lints_and_renders_valid_objects(name: str) -> None:
    linted = helm("lint", str(CHART), *VALUE_SETS[name])
    assert linted.returncode == 0, linted.stdout + linted.stderr
    objects = render(*VALUE_SETS[name])
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        namespaced = obj["kind"] not in CLUSTER_KINDS
        assert (obj["metadata"].get("namespace") == NAMESPACE) == namespaced, obj["metadata"]


def test_value_sets_change_what_is_deployed() -> None:
    kinds = {
        n: {(o["kind"], o["metadata"]["name"]) for o in render(*v)} for n, v in VALUE_SETS.items()
    }
    assert ("DaemonSet", "ai-console-mps") in kinds["mps"] - kinds["defaults"]
    assert ("DaemonSet", "ai-console-agent") in kinds["defaults"] - kinds["no-gpu-nodes"]
    assert ("Deployment", "ai-console-jobs") in kinds["defaults"] - kinds["no-jobs"]
    # An external database: no SQLite volume for the jobs service, the URL from its Secret.
    assert ("PersistentVolumeClaim", "ai-console-jobs-db") in kinds["defaults"]
    assert ("PersistentVolumeClaim", "ai-console-jobs-db") not in kinds["postgresql"]
    # Users' claims: made by the hub (storage_pvc_ensure), unless storage is off.
    for name, made in (("defaults", True), ("no-storage", False)):
        config = by_kind(render(*VALUE_SETS[name]), "ConfigMap")["ai-console-hub"]["data"]
        assert ("c.KubeSpawner.storage_pvc_ensure = True" in config["jupyterhub_config.py"]) is made
    jobs = by_kind(render(*VALUE_SETS["postgresql"]), "Deployment")["ai-console-jobs"]
    container = jobs["spec"]["template"]["spec"]["containers"][0]
    assert "--JobsService.db_url=$(AI_CONSOLE_JOBS_DB_URL)" in container["command"]
    [url] = [e for e in container["env"] if e["name"] == "AI_CONSOLE_JOBS_DB_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "jobs-db", "key": "url"}


def test_the_admin_file_and_extra_config_reach_the_hub() -> None:
    objects = render(*VALUE_SETS["z2jh-style"])
    config = by_kind(objects, "ConfigMap")["ai-console-hub"]["data"]
    assert yaml.safe_load(config["ai-console.yaml"]) == yaml.safe_load(EXAMPLE.read_text())
    python = config["jupyterhub_config.py"]
    assert python.index("configure(c)") < python.index("concurrent_spawn_limit = 50")
    compile(python, "jupyterhub_config.py", "exec")  # valid Python as rendered
    hub = by_kind(objects, "Deployment")["ai-console-hub"]
    env = {
        e["name"]: e.get("value") for e in hub["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["AI_CONSOLE_CONFIG"] == "/etc/ai-console/ai-console.yaml"
    assert env["AI_CONSOLE_MODE"] == "kubernetes"
    # A changed admin file changes the pod template, so `helm upgrade` restarts the hub.
    other = render("--set-json", 'aiConsole={"profiles": [{"display_name": "CPU"}]}')
    checksum = "checksum/config"
    before = hub["spec"]["template"]["metadata"]["annotations"][checksum]
    after = by_kind(other, "Deployment")["ai-console-hub"]["spec"]["template"]["metadata"]
    assert after["annotations"][checksum] != before


def test_one_active_hub() -> None:
    hub = by_kind(render(), "Deployment")["ai-console-hub"]
    assert hub["spec"]["replicas"] == 1 and hub["spec"]["strategy"] == {"type": "Recreate"}


def test_rbac_is_exactly_the_documented_least_privilege() -> None:
    objects = render(*VALUE_SETS["mps"])
    expected = {
        "ai-console-hub": ("Role", "ai-console-hub", rules_of("hub-rbac.yaml")["ai-console-hub"]),
        f"{NAMESPACE}-ai-console-hub-cluster": (
            "ClusterRole",
            "ai-console-hub",
            rules_of("hub-rbac.yaml")["ai-console-hub-cluster"],
        ),
        "ai-console-jobs": (
            "Role",
            "ai-console-jobs",
            rules_of("jobs-rbac.yaml")["ai-console-jobs"],
        ),
        f"{NAMESPACE}-ai-console-agent": (
            "ClusterRole",
            "ai-console-agent",
            rules_of("agent-rbac.yaml")["ai-console-agent"],
        ),
    }
    roles = {**by_kind(objects, "Role"), **by_kind(objects, "ClusterRole")}
    bindings = {**by_kind(objects, "RoleBinding"), **by_kind(objects, "ClusterRoleBinding")}
    assert set(roles) == set(expected) == set(bindings)
    for name, (kind, account, rules) in expected.items():
        assert roles[name]["kind"] == kind and roles[name]["rules"] == rules
        binding = bindings[name]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": kind,
            "name": name,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
    for role in roles.values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
            assert "secrets" not in rule["resources"] and "pods/exec" not in rule["resources"]
            if role["kind"] == "ClusterRole":  # cluster-wide: read, and the agent's node patch
                writes = set(rule["verbs"]) - {"get", "list", "watch"}
                assert not writes or (writes == {"patch"} and rule["resources"] == ["nodes"])
    hub_rules = roles["ai-console-hub"]["rules"]
    assert any(r["resources"] == ["leases"] for r in hub_rules)  # the allocator's Lease


def test_pods_that_need_no_credentials_get_none() -> None:
    objects = render(*VALUE_SETS["mps"])
    workloads = {**by_kind(objects, "Deployment"), **by_kind(objects, "DaemonSet")}
    accounts = {
        name: w["spec"]["template"]["spec"].get("serviceAccountName")
        for name, w in workloads.items()
    }
    assert accounts == {
        "ai-console-hub": "ai-console-hub",
        "ai-console-jobs": "ai-console-jobs",
        "ai-console-agent": "ai-console-agent",
        "ai-console-proxy": None,
        "ai-console-mps": None,
    }
    for name in ("ai-console-proxy", "ai-console-mps"):
        assert workloads[name]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    python = by_kind(objects, "ConfigMap")["ai-console-hub"]["data"]["jupyterhub_config.py"]
    assert "c.KubeSpawner.automount_service_account_token = False" in python


def test_user_pods_reach_only_the_platform_they_use() -> None:
    policies = by_kind(render(), "NetworkPolicy")
    user = policies["ai-console-singleuser"]["spec"]
    assert user["podSelector"] == {"matchLabels": {"component": "singleuser-server"}}
    ports = sorted(p["port"] for rule in user["egress"] for p in rule.get("ports", []))
    assert ports == [53, 53, 8000, 8081, 10101]
    [internet] = [r for r in user["egress"] if "ipBlock" in r["to"][0]]
    assert "169.254.0.0/16" in internet["to"][0]["ipBlock"]["except"]  # no cloud metadata
    assert "10.0.0.0/8" in internet["to"][0]["ipBlock"]["except"]  # no API server, no agents
    jobs = policies["ai-console-jobs-pods"]["spec"]
    assert jobs["egress"] == user["egress"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "hub.imag=x"], "at '/hub': additional properties 'imag' not allowed"),
        (["--set", "agent.port=9400"], "at '/agent/port'"),
        (["--set-json", 'aiConsole={"profilez": []}'], "additional properties 'profilez'"),
        (["--set", "proxy.service.type=Public"], "at '/proxy/service/type'"),
        (["--set", "jobs.db.url=mysql://x"], "at '/jobs/db/url'"),
        (
            ["--set", "singleuser.storage.pvcNameTemplate=home"],
            "at '/singleuser/storage/pvcNameTemplate'",
        ),
        (["--set", "hub.config.jupyterhub=x"], "at '/hub/config/jupyterhub'"),
    ],
)
def test_bad_values_are_refused_with_their_path(values: list[str], message: str) -> None:
    for command in (["lint", str(CHART)], ["template", "ai", str(CHART)]):
        done = helm(*command, *values)
        assert done.returncode != 0
        assert message in done.stdout + done.stderr


def test_the_notes_warn_when_nobody_could_log_in() -> None:
    """JupyterHub's default authenticator (PAM) has no accounts in the hub's container."""

    def notes(*values: str) -> str:
        done = helm("install", "ai", str(CHART), "--dry-run=client", "-n", NAMESPACE, *values)
        assert done.returncode == 0, done.stderr
        return done.stdout.split("NOTES:", 1)[1]

    assert "WARNING: no authenticator chosen" in notes()
    chosen = notes("--set", "hub.config.JupyterHub.authenticator_class=github")
    assert "Users log in with: github." in chosen and "WARNING" not in chosen
    assert "kubectl port-forward" in notes("--set", "proxy.service.type=ClusterIP")


def test_values_schema_is_current() -> None:
    """values.schema.json is generated from hub_config.schema (python helm/values_schema.py)."""
    spec = importlib.util.spec_from_file_location(
        "values_schema", ROOT / "helm" / "values_schema.py"
    )
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    current = (CHART / "values.schema.json").read_text()
    assert current == generator.rendered(), "stale: run python helm/values_schema.py"
