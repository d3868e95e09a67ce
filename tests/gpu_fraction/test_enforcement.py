"""Container environment and Kubernetes volumes that enforce a GPU slice."""

from __future__ import annotations

import ast
import re
from fractions import Fraction
from pathlib import Path

import pytest

from gpu_fraction import enforcement as enf
from gpu_fraction import keys
from gpu_fraction.errors import InvalidFieldError
from gpu_fraction.model import Allocation, Owner

OWNER = Owner(kind="notebook", user="alice", project="cs101", name="lab-1")
UUID_A = "GPU-3f2a1b6c-0000-1111-2222-333344445555"
UUID_B = "GPU-9c8d7e6f-0000-1111-2222-333344445555"


def quarter(**changes: object) -> Allocation:
    """1/4 of a 24 GiB RTX 3090, guaranteed 25% compute, bursting to 100%."""
    values: dict[str, object] = {
        "id": "alloc-1",
        "owner": OWNER,
        "node": "gpu-01",
        "gpu_type": "RTX3090",
        "gpu_uuids": (UUID_A,),
        "gpu_indices": (2,),
        "fraction": Fraction(1, 4),
        "memory_mib": 6144,
        "gpu_memory_mib": 24576,
        "compute_min": 25,
        "compute_max": 100,
    }
    values.update(changes)
    return Allocation(**values)  # type: ignore[arg-type]


def whole(count: int = 2, **changes: object) -> Allocation:
    uuids = (UUID_A, UUID_B)[:count]
    return quarter(
        fraction=Fraction(count),
        gpu_uuids=uuids,
        gpu_indices=tuple(range(1, count + 1)),
        memory_mib=24576,
        compute_min=100,
        compute_max=100,
        **changes,
    )


SLICE_VARS = {
    keys.ENV_GPU_MEMORY_MIB,
    keys.ENV_GPU_MEMORY_FRACTION,
    keys.ENV_COMPUTE_MIN,
    keys.ENV_COMPUTE_MAX,
    enf.ENV_XLA_MEM_FRACTION,
    enf.ENV_TF_ALLOW_GROWTH,
}
MPS_CAPS = {enf.ENV_MPS_PINNED_MEM_LIMIT, enf.ENV_MPS_THREAD_PERCENTAGE}


def test_fractional_in_container_without_mps() -> None:
    env = enf.container_environment(quarter())
    assert env == {
        keys.ENV_ALLOCATION_ID: "alloc-1",
        keys.ENV_OWNER_KIND: "notebook",
        keys.ENV_OWNER_USER: "alice",
        keys.ENV_OWNER_PROJECT: "cs101",
        keys.ENV_OWNER_NAME: "lab-1",
        keys.ENV_GPU_TYPE: "RTX3090",
        keys.ENV_GPU_SHARE: "1/4",
        keys.ENV_GPU_DEVICE_MEMORY_MIB: "24576",
        keys.ENV_GPU_SIMULATED: "false",
        "NVIDIA_VISIBLE_DEVICES": UUID_A,
        "CUDA_VISIBLE_DEVICES": "0",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        keys.ENV_GPU_MEMORY_MIB: "6144",
        keys.ENV_GPU_MEMORY_FRACTION: "0.25",
        keys.ENV_COMPUTE_MIN: "25",
        keys.ENV_COMPUTE_MAX: "100",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.25",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    }
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in env
    assert not MPS_CAPS & env.keys()
    assert all(isinstance(v, str) for v in env.values())


def test_fractional_with_mps() -> None:
    env = enf.container_environment(quarter(compute_max=50), mps=enf.MpsSettings())
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/nvidia-mps"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=6144M"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"  # the burst maximum, not the minimum
    assert env[keys.ENV_COMPUTE_MAX] == "50"


def test_fractional_local_process_uses_real_device_ids() -> None:
    env = enf.container_environment(quarter(), in_container=False)
    assert env["CUDA_VISIBLE_DEVICES"] == UUID_A
    assert "NVIDIA_VISIBLE_DEVICES" not in env
    by_index = enf.container_environment(quarter(), in_container=False, use_uuids=False)
    assert by_index["CUDA_VISIBLE_DEVICES"] == "2"
    assert by_index["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # so index 2 is NVML's index 2


def test_local_process_with_mps_caps_use_client_ordinals() -> None:
    mps = enf.MpsSettings(pipe_directory="/run/user/mps", host_shm_directory=None)
    env = enf.container_environment(quarter(), mps=mps, in_container=False)
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/run/user/mps"
    # The client sees its one GPU as device 0, whatever its NVML index.
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=6144M"


def test_synthesised_uuids_fall_back_to_indices() -> None:
    alloc = quarter(gpu_uuids=("gpu-01/gpu2",))
    env = enf.container_environment(alloc)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "2"
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert enf.container_environment(alloc, in_container=False)["CUDA_VISIBLE_DEVICES"] == "2"
    assert enf.device_ids(quarter(), use_uuids=False) == ["2"]
    assert enf.device_ids(quarter()) == [UUID_A]


def test_whole_gpus_get_devices_and_owner_but_no_caps() -> None:
    env = enf.container_environment(whole(2), startup_path="/opt/ai-console/startup")
    assert env["NVIDIA_VISIBLE_DEVICES"] == f"{UUID_A},{UUID_B}"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env[keys.ENV_OWNER_USER] == "alice"
    assert env[keys.ENV_ALLOCATION_ID] == "alloc-1"
    assert not SLICE_VARS & env.keys()
    assert "PYTHONPATH" not in env  # nothing for the hook to cap
    local = enf.container_environment(whole(2), in_container=False, use_uuids=False)
    assert local["CUDA_VISIBLE_DEVICES"] == "1,2"


def test_whole_gpus_on_mps_node_connect_without_caps() -> None:
    env = enf.container_environment(whole(2), mps=enf.MpsSettings())
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/nvidia-mps"
    assert not MPS_CAPS & env.keys()


def test_multi_gpu_fractional_caps_every_visible_device() -> None:
    # A share spans one GPU in the model, but the env format handles several devices.
    alloc = quarter(gpu_uuids=(UUID_A, UUID_B), gpu_indices=(0, 1))
    env = enf.container_environment(alloc, mps=enf.MpsSettings())
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=6144M,1=6144M"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_simulated_allocation_has_no_device() -> None:
    alloc = quarter(gpu_uuids=("SIM-GPU-local-0",), gpu_indices=(0,), simulated=True)
    env = enf.container_environment(alloc, mps=enf.MpsSettings(), startup_path="/hook")
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"  # overrides images that default to "all"
    assert "CUDA_MPS_PIPE_DIRECTORY" not in env  # there is no daemon for a simulated GPU
    assert not MPS_CAPS & env.keys()
    assert env[keys.ENV_GPU_MEMORY_MIB] == "6144"  # caps still declared, harmlessly
    assert env["PYTHONPATH"] == "/hook"
    local = enf.container_environment(alloc, in_container=False)
    assert local["CUDA_VISIBLE_DEVICES"] == ""
    assert "NVIDIA_VISIBLE_DEVICES" not in local


def test_every_slice_tells_the_server_what_it_is() -> None:
    """Type, share, GPU size and simulated: what the Lab's status bar shows (enforces nothing)."""
    env = enf.container_environment(whole(2), in_container=False)
    assert env[keys.ENV_GPU_TYPE] == "RTX3090"
    assert env[keys.ENV_GPU_SHARE] == "2"
    assert env[keys.ENV_GPU_DEVICE_MEMORY_MIB] == "24576"
    assert env[keys.ENV_GPU_SIMULATED] == "false"
    sim = quarter(gpu_uuids=("SIM-GPU-local-0",), gpu_indices=(0,), simulated=True)
    env = enf.container_environment(sim, in_container=False)
    assert env[keys.ENV_GPU_SHARE] == "1/4"
    assert env[keys.ENV_GPU_SIMULATED] == "true"


@pytest.mark.parametrize(
    ("memory_mib", "gpu_memory_mib", "fraction", "xla"),
    [
        (6144, 24576, "0.25", "0.25"),
        (8192, 24576, "0.3333", "0.333"),
        (12288, 24576, "0.5", "0.5"),
        (2048, 81920, "0.025", "0.025"),
        (10, 81920, "0.0001", "0.001"),  # never rounds down to zero
        (24576, 24576, "1", "1"),
    ],
)
def test_fraction_formats_round_down(
    memory_mib: int, gpu_memory_mib: int, fraction: str, xla: str
) -> None:
    alloc = quarter(memory_mib=memory_mib, gpu_memory_mib=gpu_memory_mib)
    env = enf.container_environment(alloc)
    assert env[keys.ENV_GPU_MEMORY_FRACTION] == fraction
    assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == xla
    assert re.fullmatch(r"0\.\d{1,3}|1", env["XLA_PYTHON_CLIENT_MEM_FRACTION"])
    assert float(fraction) <= memory_mib / gpu_memory_mib or fraction.endswith("1")


def test_startup_path_and_merge() -> None:
    env = enf.container_environment(quarter(), startup_path=enf.STARTUP_MOUNT_PATH)
    assert env["PYTHONPATH"] == "/opt/ai-console/startup"
    assert enf.merge_pythonpath("/hook", None) == "/hook"
    assert enf.merge_pythonpath("/hook", "/a:/b") == "/hook:/a:/b"
    assert enf.merge_pythonpath("/hook", "/a:/hook:") == "/hook:/a"


def test_mps_settings_validation() -> None:
    with pytest.raises(InvalidFieldError) as err:
        enf.MpsSettings(pipe_directory="relative/dir")
    assert err.value.field == "mps.pipe_directory"
    with pytest.raises(InvalidFieldError) as err:
        enf.MpsSettings(host_shm_directory="shm")
    assert err.value.field == "mps.host_shm_directory"
    assert enf.MpsSettings(host_pipe_directory="/run/mps").host_pipe == "/run/mps"
    assert enf.MpsSettings().host_pipe == "/tmp/nvidia-mps"


# --- volumes -------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # DNS-1123 label, as volume names are


def assert_valid_volumes(volumes: list[dict], mounts: list[dict]) -> None:
    """The core/v1 rules the API server would check for these fields."""
    names = [v["name"] for v in volumes]
    assert len(names) == len(set(names))
    for volume in volumes:
        assert _NAME_RE.match(volume["name"]) and len(volume["name"]) <= 63
        sources = set(volume) - {"name"}
        assert len(sources) == 1 and sources <= {"hostPath", "configMap"}
        if "hostPath" in volume:
            assert set(volume["hostPath"]) <= {"path", "type"}
            assert volume["hostPath"]["path"].startswith("/")
            assert volume["hostPath"]["type"] in {"", "Directory", "DirectoryOrCreate"}
        if "configMap" in volume:
            config = volume["configMap"]
            assert set(config) <= {"name", "items", "defaultMode", "optional"}
            assert 0 <= config["defaultMode"] <= 0o777
            assert all(set(item) == {"key", "path"} for item in config["items"])
    paths = [m["mountPath"] for m in mounts]
    assert len(paths) == len(set(paths))
    for mount in mounts:
        assert set(mount) <= {"name", "mountPath", "readOnly", "subPath"}
        assert mount["name"] in names
        assert mount["mountPath"].startswith("/")
        assert isinstance(mount.get("readOnly", False), bool)
    _schema_check(volumes, mounts)


def _schema_check(volumes: list[dict], mounts: list[dict]) -> None:
    """When kubernetes_validate happens to be installed, also check a Pod holding them."""
    try:
        import kubernetes_validate  # type: ignore[import-not-found]
    except ImportError:
        return
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "volumes": volumes,
            "containers": [{"name": "c", "image": "i", "volumeMounts": mounts}],
        },
    }
    kubernetes_validate.validate(pod, "1.30", strict=True)


def test_volumes_for_mps_and_hook() -> None:
    volumes, mounts = enf.kubernetes_volumes(
        quarter(), mps=enf.MpsSettings(), startup_configmap="ai-console-startup-hook"
    )
    assert_valid_volumes(volumes, mounts)
    assert volumes == [
        {
            "name": "ai-console-mps-pipe",
            "hostPath": {"path": "/tmp/nvidia-mps", "type": "Directory"},
        },
        {
            "name": "ai-console-mps-shm",
            "hostPath": {"path": "/run/nvidia/mps/shm", "type": "Directory"},
        },
        {
            "name": "ai-console-startup",
            "configMap": {
                "name": "ai-console-startup-hook",
                "items": [{"key": "sitecustomize.py", "path": "sitecustomize.py"}],
                "defaultMode": 0o444,
            },
        },
    ]
    assert mounts == [
        {"name": "ai-console-mps-pipe", "mountPath": "/tmp/nvidia-mps"},
        {"name": "ai-console-mps-shm", "mountPath": "/dev/shm"},
        {"name": "ai-console-startup", "mountPath": "/opt/ai-console/startup", "readOnly": True},
    ]
    # The hook mount is where PYTHONPATH points.
    env = enf.container_environment(quarter(), startup_path=enf.STARTUP_MOUNT_PATH)
    assert env["PYTHONPATH"] == mounts[2]["mountPath"]


def test_volumes_custom_mps_paths() -> None:
    mps = enf.MpsSettings(
        pipe_directory="/mps/pipe", host_pipe_directory="/run/nvidia/mps/pipe",
        host_shm_directory=None,
    )  # fmt: skip
    volumes, mounts = enf.kubernetes_volumes(quarter(), mps=mps, startup_configmap=None)
    assert_valid_volumes(volumes, mounts)
    assert volumes == [
        {
            "name": "ai-console-mps-pipe",
            "hostPath": {"path": "/run/nvidia/mps/pipe", "type": "Directory"},
        }
    ]
    assert mounts == [{"name": "ai-console-mps-pipe", "mountPath": "/mps/pipe"}]


def test_volumes_none_without_mps_or_hook() -> None:
    assert enf.kubernetes_volumes(quarter(), mps=None, startup_configmap=None) == ([], [])


def test_volumes_whole_gpu_gets_mps_but_no_hook() -> None:
    volumes, mounts = enf.kubernetes_volumes(
        whole(1), mps=enf.MpsSettings(), startup_configmap="hook"
    )
    assert_valid_volumes(volumes, mounts)
    assert [v["name"] for v in volumes] == ["ai-console-mps-pipe", "ai-console-mps-shm"]


def test_volumes_simulated_gets_hook_but_no_mps() -> None:
    alloc = quarter(simulated=True, gpu_uuids=("SIM-GPU-local-0",))
    volumes, mounts = enf.kubernetes_volumes(alloc, mps=enf.MpsSettings(), startup_configmap="h")
    assert_valid_volumes(volumes, mounts)
    assert [v["name"] for v in volumes] == ["ai-console-startup"]


@pytest.mark.parametrize("name", ["", "Hook", "hook_1", "-hook", "a" * 254])
def test_volumes_reject_bad_configmap_name(name: str) -> None:
    with pytest.raises(InvalidFieldError) as err:
        enf.kubernetes_volumes(quarter(), mps=None, startup_configmap=name)
    assert err.value.field == "startup_configmap"


# --- the hook as data ----------------------------------------------------------------------------


def test_startup_hook_source_and_dir() -> None:
    directory = Path(enf.startup_hook_dir())
    assert directory.is_dir()
    assert (directory / "sitecustomize.py").read_text() == enf.startup_hook_source()
    assert not (directory / "__init__.py").exists()  # a PYTHONPATH entry, not a package
    assert sorted(p.name for p in directory.iterdir() if p.suffix == ".py") == ["sitecustomize.py"]
    assert enf.startup_configmap_data() == {"sitecustomize.py": enf.startup_hook_source()}


def test_startup_hook_uses_the_same_env_names_and_only_stdlib() -> None:
    source = enf.startup_hook_source()
    assert f'"{keys.ENV_GPU_MEMORY_FRACTION}"' in source
    assert f'"{keys.ENV_GPU_MEMORY_MIB}"' in source
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"os", "sys", "importlib"}
