"""The start-up hook's TensorFlow cap (issue 8, point 7), in real interpreters (subprocesses).

At ``import tensorflow`` the cap must not enumerate devices (in TF that initialises CUDA), and the
calls users make to configure GPU memory themselves must keep working: memory growth means growth
within the slice; their own logical devices are honoured within the slice and fitted to it when
larger. Three kinds of evidence:

* (a) the real TensorFlow (the CPU build, which is what installs here) running the usual snippet;
* (b) the real TensorFlow with its C++ device listing replaced by one that reports a GPU, so TF's
  own Python rules (``tensorflow/python/eager/context.py``) decide what is allowed and compute the
  ``GPUOptions`` its runtime would be created with;
* (c) a small fake ``tensorflow`` that reproduces those rules and records the configuration its
  context is initialised with, including what the runtime would read from the environment.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from gpu_fraction import keys

from .test_startup_hook import last_json, run_python

SLICE = {keys.ENV_GPU_MEMORY_MIB: "4096"}
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}  # TF's C++ start-up chatter on stderr
DEBUG = {"AI_CONSOLE_DEBUG": "1"}
HOOK_LINE = "ai-console startup hook: "
GROWTH_ENV = "TF_FORCE_GPU_ALLOW_GROWTH"
VIRTUAL_DEVICES_ERROR = [
    "ValueError",
    "Cannot set memory growth on device when virtual devices configured",
]


@pytest.fixture(autouse=True)
def _no_outer_growth_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GROWTH_ENV, raising=False)  # run_python passes this environment on


# --- (a) the real TensorFlow, CPU build ----------------------------------------------------------

real_tensorflow = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,  # found, not imported
    reason="needs tensorflow (make install puts tensorflow-cpu in .venv)",
)

USER_SNIPPET = """
import json
import tensorflow as tf
from tensorflow.python.eager import context
ctx = context.context_safe()
listed_at_import = ctx is not None and ctx._physical_devices is not None
gpus = tf.config.list_physical_devices("GPU")
[tf.config.experimental.set_memory_growth(g, True) for g in gpus]
print(tf.reduce_sum(tf.matmul(tf.ones((64, 64)), tf.ones((64, 64)))).numpy())
wrapped = {
    name: getattr(getattr(context.Context, name), "_ai_console_slice_mib", None)
    for name in ("_initialize_physical_devices", "set_memory_growth",
                 "set_logical_device_configuration")
}
print(json.dumps({"listed_at_import": listed_at_import, "gpus": len(gpus), "wrapped": wrapped,
                  "name": context.Context.set_memory_growth.__name__}))
"""


@real_tensorflow
def test_real_tensorflow_lists_no_device_at_import_and_runs_user_code(tmp_path: Path) -> None:
    result = run_python(USER_SNIPPET, env=SLICE | QUIET, cwd=tmp_path)
    out = last_json(result)
    assert result.stdout.splitlines()[0] == "262144.0"  # 64 x 64 entries of 64
    assert out["listed_at_import"] is False  # no device enumeration, so no CUDA, at import
    assert out["gpus"] == 0  # the CPU build
    assert out["wrapped"] == dict.fromkeys(out["wrapped"], 4096)  # the cap is in place
    assert out["name"] == "set_memory_growth"  # and looks like TF's method
    assert HOOK_LINE not in result.stderr


@real_tensorflow
def test_real_tensorflow_cpu_configuration_and_errors_are_tensorflows(tmp_path: Path) -> None:
    code = """
    import json
    import tensorflow as tf
    out = {}
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    out["logical_cpus"] = len(tf.config.list_logical_devices("CPU"))
    for name, call in [
        ("growth_on_cpu", lambda: tf.config.experimental.set_memory_growth(cpu, True)),
        ("cpu_after_init", lambda: tf.config.set_logical_device_configuration(cpu, [])),
    ]:
        try:
            call()
            out[name] = None
        except Exception as err:
            out[name] = [type(err).__name__, str(err)]
    print(json.dumps(out))
    """
    plain = last_json(run_python(code, hook=False, env=QUIET, cwd=tmp_path))
    hooked = run_python(code, env=SLICE | QUIET | DEBUG, cwd=tmp_path)
    assert last_json(hooked) == plain
    assert plain["logical_cpus"] == 2
    assert plain["growth_on_cpu"][0] == "ValueError"
    assert plain["cpu_after_init"][0] == "RuntimeError"
    assert HOOK_LINE not in hooked.stderr


# --- (b) the real TensorFlow's Python rules, with a GPU reported by a stand-in device listing ----

# TF lists devices through pywrap_tfe.TF_ListPhysicalDevices (C++). Reporting a GPU there makes the
# real context.py treat it as one: set_memory_growth, set_logical_device_configuration and the
# GPUOptions the runtime would be created with (Context._compute_gpu_options) are TF's own. The
# runtime itself is never initialised (a CPU build has no GPU device to create).
# In each script: a call's error as [type, message], or None when it went through.
ATTEMPT = """
def attempt(call):
    try:
        call()
        return None
    except Exception as err:
        return [type(err).__name__, str(err)]
"""

SIMULATED_GPU = """
import json, os
import tensorflow as tf
from tensorflow.python import pywrap_tfe
from tensorflow.python.eager import context

ctx = context.context_safe()
out = {"listed_at_import": ctx is not None and ctx._physical_devices is not None}
pywrap_tfe.TF_ListPhysicalDevices = lambda: [b"/physical_device:CPU:0", b"/physical_device:GPU:0"]
LDC = tf.config.LogicalDeviceConfiguration
gpu = tf.config.list_physical_devices("GPU")[0]

ATTEMPT

def options():
    gpu_options = context.context()._compute_gpu_options()
    limits = [list(v.memory_limit_mb) for v in gpu_options.experimental.virtual_devices]
    return {"limits": limits, "allow_growth": gpu_options.allow_growth,
            "env": os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH")}

STEPS
print(json.dumps(out))
"""


def simulated(steps: str) -> str:
    return SIMULATED_GPU.replace("ATTEMPT\n", ATTEMPT).replace("STEPS", textwrap.dedent(steps))


GROWTH_STEPS = """
out["growth"] = attempt(lambda: tf.config.experimental.set_memory_growth(gpu, True))
out["get_growth"] = tf.config.experimental.get_memory_growth(gpu)
out["options"] = options()
"""


@real_tensorflow
def test_simulated_gpu_memory_growth_grows_within_the_slice(tmp_path: Path) -> None:
    out = last_json(run_python(simulated(GROWTH_STEPS), env=SLICE | QUIET, cwd=tmp_path))
    assert out["listed_at_import"] is False
    assert out["growth"] is None  # no error
    assert out["get_growth"] is True
    # One logical device of the slice (TF then ignores allow_growth), and its allocator told by
    # the environment to grow into it.
    assert out["options"] == {"limits": [[4096.0]], "allow_growth": False, "env": "true"}
    # The stand-in is faithful: without the hook TF takes the growth request as such.
    plain = last_json(run_python(simulated(GROWTH_STEPS), hook=False, env=QUIET, cwd=tmp_path))
    assert plain["growth"] is None
    assert plain["options"] == {"limits": [], "allow_growth": True, "env": None}


@real_tensorflow
def test_simulated_gpu_user_configurations(tmp_path: Path) -> None:
    steps = """
    out["slice"] = options()
    tf.config.set_logical_device_configuration(gpu, [LDC(1024), LDC(2048)])
    out["within"] = options()
    tf.config.set_logical_device_configuration(gpu, [LDC(6144), LDC(2048)])
    out["over"] = options()
    out["over_config"] = [c.memory_limit for c in tf.config.get_logical_device_configuration(gpu)]
    tf.config.set_logical_device_configuration(gpu, [])
    out["emptied"] = options()
    tf.config.set_logical_device_configuration(gpu, [LDC(memory_limit=1024)])
    tf.config.set_logical_device_configuration(gpu, None)
    out["removed"] = options()
    out["growth_with_slice"] = attempt(lambda: tf.config.experimental.set_memory_growth(gpu, False))
    tf.config.set_logical_device_configuration(gpu, [LDC(memory_limit=1024)])
    out["growth_with_own"] = attempt(lambda: tf.config.experimental.set_memory_growth(gpu, True))
    out["unknown"] = attempt(lambda: tf.config.experimental.set_memory_growth("GPU:7", True))
    """
    result = run_python(simulated(steps), env=SLICE | QUIET, cwd=tmp_path)
    out = last_json(result)
    assert out["slice"]["limits"] == [[4096.0]]
    assert out["within"]["limits"] == [[1024.0, 2048.0]]  # honoured
    assert out["over"]["limits"] == [[3072.0, 1024.0]]  # each scaled by 4096 / 8192
    assert out["over_config"] == [3072, 1024]
    assert out["emptied"]["limits"] == [[4096.0]]  # [] would be the whole GPU: the slice instead
    assert out["removed"]["limits"] == [[4096.0]]
    assert out["growth_with_slice"] is None
    assert out["removed"]["env"] is None  # nobody asked for growth
    # With logical devices of their own, TF's rules and errors are the user's, as without the hook.
    assert out["growth_with_own"] == VIRTUAL_DEVICES_ERROR
    assert out["unknown"] == ["ValueError", "Unrecognized device: 'GPU:7'"]
    assert HOOK_LINE not in result.stderr  # silent without AI_CONSOLE_DEBUG

    debug = run_python(simulated(steps), env=SLICE | QUIET | DEBUG, cwd=tmp_path)
    assert last_json(debug) == out
    lines = [line for line in debug.stderr.splitlines() if line.startswith(HOOK_LINE)]
    assert lines == [
        HOOK_LINE + "tensorflow /physical_device:GPU:0: logical devices [6144, 2048] MiB fitted "
        "to the slice: [3072, 1024]"
    ]


# --- (c) a fake tensorflow that reproduces TF's rules and records the initialised config ---------

FAKE_CONTEXT = """
import collections, os

events = []


class LogicalDeviceConfiguration(
    collections.namedtuple(
        "LogicalDeviceConfiguration",
        ["memory_limit", "experimental_priority", "experimental_device_ordinal"],
    )
):
    def __new__(cls, memory_limit=None, experimental_priority=None,
                experimental_device_ordinal=None):
        return super().__new__(cls, memory_limit, experimental_priority,
                               experimental_device_ordinal)


class PhysicalDevice(collections.namedtuple("PhysicalDevice", ["name", "device_type"])):
    pass


class Context:
    def __init__(self):
        self._physical_devices = None
        self._memory_growth_map = None
        self._virtual_device_map = {}
        self._context_handle = None
        self.initialised_with = None

    def _initialize_physical_devices(self, reinitialize=False):
        if not reinitialize and self._physical_devices is not None:
            return
        events.append("list devices")  # in TF: TF_ListPhysicalDevices, which initialises CUDA
        self._physical_devices = [
            PhysicalDevice("/physical_device:CPU:0", "CPU"),
            PhysicalDevice("/physical_device:GPU:0", "GPU"),
        ]
        self._memory_growth_map = {
            d: None for d in self._physical_devices if d.device_type == "GPU"
        }

    def list_physical_devices(self, device_type=None):
        self._initialize_physical_devices()
        return [d for d in self._physical_devices if device_type in (None, d.device_type)]

    def get_memory_growth(self, dev):
        self._initialize_physical_devices()
        if dev not in self._physical_devices:
            raise ValueError("Unrecognized device: %s" % repr(dev))
        return self._memory_growth_map[dev]

    def set_memory_growth(self, dev, enable):
        self._initialize_physical_devices()
        if dev not in self._physical_devices:
            raise ValueError("Unrecognized device: %s" % repr(dev))
        if dev in self._virtual_device_map:
            raise ValueError("Cannot set memory growth on device when virtual devices configured")
        if dev.device_type != "GPU":
            raise ValueError("Cannot set memory growth on non-GPU and non-Pluggable devices")
        if self._memory_growth_map.get(dev) == enable:
            return
        if self._context_handle is not None:
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        self._memory_growth_map[dev] = enable

    def get_logical_device_configuration(self, dev):
        self._initialize_physical_devices()
        if dev not in self._physical_devices:
            raise ValueError("Unrecognized device: %s" % repr(dev))
        return self._virtual_device_map.get(dev)

    def set_logical_device_configuration(self, dev, virtual_devices):
        self._initialize_physical_devices()
        if dev not in self._physical_devices:
            raise ValueError("Unrecognized device: %s" % repr(dev))
        if dev.device_type == "GPU":
            for vdev in virtual_devices:
                if vdev.memory_limit is None:
                    raise ValueError("Setting memory limit is required for GPU virtual devices")
        if self._virtual_device_map.get(dev) == virtual_devices:
            return
        if self._context_handle is not None:
            raise RuntimeError("Virtual devices cannot be modified after being initialized")
        self._virtual_device_map[dev] = virtual_devices

    def ensure_initialized(self):
        if self._context_handle is not None:
            return
        self._initialize_physical_devices()
        gpu = self.list_physical_devices("GPU")[0]
        virtual = self._virtual_device_map.get(gpu)
        self.initialised_with = {
            # With logical devices TF passes no allow_growth (memory growth is ignored), and an
            # empty list means one device with the whole GPU.
            "limits": [v.memory_limit for v in virtual] if virtual else None,
            "allow_growth": None if self._virtual_device_map else self._memory_growth_map[gpu],
            "env": os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"),
        }
        self._context_handle = object()
        events.append("initialised")


_context = None


def context():
    global _context
    if _context is None:
        _context = Context()
    return _context


def context_safe():
    return _context
"""
FAKE_CONFIG = """
from tensorflow.python.eager import context
from tensorflow.python.eager.context import LogicalDeviceConfiguration
from . import experimental


def list_physical_devices(device_type=None):
    return context.context().list_physical_devices(device_type)


def get_logical_device_configuration(device):
    return context.context().get_logical_device_configuration(device)


def set_logical_device_configuration(device, logical_devices):
    context.context().set_logical_device_configuration(device, logical_devices)
"""
FAKE_EXPERIMENTAL = """
from tensorflow.python.eager import context


def get_memory_growth(device):
    return context.context().get_memory_growth(device)


def set_memory_growth(device, enable):
    context.context().set_memory_growth(device, enable)
"""
FAKE_INIT = """
from tensorflow.python.eager import context as _context
from . import config


def ones(n):  # the first op initialises the context, as in TF
    _context.context().ensure_initialized()
    return [1.0] * n
"""


@pytest.fixture
def fake_tf(tmp_path: Path) -> Path:
    root = tmp_path / "fake-tf"
    files = {
        "tensorflow/__init__.py": FAKE_INIT,
        "tensorflow/config/__init__.py": FAKE_CONFIG,
        "tensorflow/config/experimental/__init__.py": FAKE_EXPERIMENTAL,
        "tensorflow/python/__init__.py": "",
        "tensorflow/python/eager/__init__.py": "",
        "tensorflow/python/eager/context.py": FAKE_CONTEXT,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


FAKE_RUN = """
import json, os
import tensorflow as tf
from tensorflow.python.eager import context
out = {"at_import": list(context.events)}
LDC = tf.config.LogicalDeviceConfiguration
gpu = tf.config.list_physical_devices("GPU")[0]

ATTEMPT

STEPS
tf.ones(3)
out["initialised_with"] = context.context().initialised_with
out["events"] = context.events
print(json.dumps(out))
"""


def fake_run(fake_tf: Path, steps: str, env: dict[str, str] = SLICE) -> dict:
    """Run ``steps`` between the first device listing and the context's initialisation."""
    code = FAKE_RUN.replace("ATTEMPT\n", ATTEMPT).replace("STEPS", textwrap.dedent(steps))
    result = run_python(code, env=env, path=(fake_tf,))
    out = last_json(result)
    out["stderr"] = result.stderr
    return out


def test_fake_nothing_listed_at_import(fake_tf: Path) -> None:
    out = fake_run(fake_tf, "")
    assert out["at_import"] == []
    assert out["events"] == ["list devices", "initialised"]
    assert out["initialised_with"] == {"limits": [4096], "allow_growth": None, "env": None}
    assert out["stderr"] == ""


GROWTH = """
out["growth"] = attempt(lambda: tf.config.experimental.set_memory_growth(gpu, ENABLE))
out["get_growth"] = tf.config.experimental.get_memory_growth(gpu)
out["env_before_init"] = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH")
"""


@pytest.mark.parametrize("grow", [True, False])
def test_fake_memory_growth_within_the_slice(fake_tf: Path, grow: bool) -> None:
    out = fake_run(fake_tf, GROWTH.replace("ENABLE", str(grow)))
    assert out["growth"] is None
    assert out["get_growth"] is grow
    env = "true" if grow else None
    assert out["env_before_init"] == env
    assert out["initialised_with"] == {"limits": [4096], "allow_growth": None, "env": env}
    assert out["stderr"] == ""


def test_fake_memory_growth_switched_off_again(fake_tf: Path) -> None:
    steps = """
    tf.config.experimental.set_memory_growth(gpu, True)
    tf.config.experimental.set_memory_growth(gpu, False)
    """
    out = fake_run(fake_tf, steps)
    assert out["initialised_with"] == {"limits": [4096], "allow_growth": None, "env": None}


@pytest.mark.parametrize("value", ["false", "true"])
def test_fake_users_own_growth_variable_is_left_alone(fake_tf: Path, value: str) -> None:
    # TF lets TF_FORCE_GPU_ALLOW_GROWTH override the configuration: the user's value stands.
    for grow in ("True", "False"):
        out = fake_run(fake_tf, GROWTH.replace("ENABLE", grow), env=SLICE | {GROWTH_ENV: value})
        assert out["growth"] is None
        assert out["initialised_with"] == {"limits": [4096], "allow_growth": None, "env": value}


def test_fake_changes_after_initialisation_are_tensorflows_errors(fake_tf: Path) -> None:
    steps = """
    cpu = tf.config.list_physical_devices("CPU")[0]
    out["cpu_growth"] = attempt(lambda: tf.config.experimental.set_memory_growth(cpu, True))
    tf.ones(1)
    out["same"] = attempt(lambda: tf.config.experimental.set_memory_growth(gpu, None))
    out["changed"] = attempt(lambda: tf.config.experimental.set_memory_growth(gpu, True))
    out["env"] = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH")
    out["config"] = attempt(
        lambda: tf.config.set_logical_device_configuration(gpu, [LDC(memory_limit=1024)])
    )
    out["removed"] = attempt(lambda: tf.config.set_logical_device_configuration(gpu, None))
    """
    out = fake_run(fake_tf, steps)
    assert out["cpu_growth"] == [
        "ValueError",
        "Cannot set memory growth on non-GPU and non-Pluggable devices",
    ]
    assert out["same"] is None
    assert out["changed"] == [
        "RuntimeError",
        "Physical devices cannot be modified after being initialized",
    ]
    assert out["env"] is None
    assert out["config"] == [
        "RuntimeError",
        "Virtual devices cannot be modified after being initialized",
    ]
    assert out["removed"] is None  # the slice's configuration already: nothing to change
    assert out["initialised_with"]["limits"] == [4096]
    assert out["stderr"] == ""


CONFIGS = {
    # name: (the user's limits in MiB, the limits the context is initialised with)
    "within": ([1024, 2048], [1024, 2048]),
    "exactly": ([4096], [4096]),
    "over": ([8192], [4096]),
    "over-split": ([3000, 3000, 2000], [1536, 1536, 1024]),
    "no-limit": ([None], [4096]),
    "no-limit-and-one": ([None, 4096], [2048, 2048]),
    "empty": ([], [4096]),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fake_user_configuration_fitted_to_the_slice(fake_tf: Path, name: str) -> None:
    given, expected = CONFIGS[name]
    steps = f"""
    out["set"] = attempt(lambda: tf.config.set_logical_device_configuration(
        gpu, [LDC(memory_limit=limit) for limit in {given!r}]))
    out["get"] = [c.memory_limit for c in tf.config.get_logical_device_configuration(gpu)]
    """
    out = fake_run(fake_tf, steps)
    assert out["set"] is None
    assert out["get"] == expected
    assert out["initialised_with"]["limits"] == expected
    assert out["stderr"] == ""


def test_fake_configuration_removed_gives_back_the_slice(fake_tf: Path) -> None:
    steps = """
    tf.config.set_logical_device_configuration(gpu, [LDC(memory_limit=1024)])
    out["own"] = [c.memory_limit for c in tf.config.get_logical_device_configuration(gpu)]
    out["growth_with_own"] = attempt(lambda: tf.config.experimental.set_memory_growth(gpu, True))
    tf.config.set_logical_device_configuration(gpu, None)
    out["after"] = [c.memory_limit for c in tf.config.get_logical_device_configuration(gpu)]
    tf.config.set_logical_device_configuration(gpu, (LDC(1024),))
    tf.config.set_logical_device_configuration(gpu, ())
    out["after_tuple"] = [c.memory_limit for c in tf.config.get_logical_device_configuration(gpu)]
    out["growth"] = attempt(lambda: tf.config.experimental.set_memory_growth(gpu, True))
    """
    out = fake_run(fake_tf, steps)
    assert out["own"] == [1024]
    assert out["after_tuple"] == [4096]
    assert out["growth_with_own"] == VIRTUAL_DEVICES_ERROR  # TF's rule for the user's own config
    assert out["after"] == [4096]
    assert out["growth"] is None  # the slice's configuration again: growth within it
    assert out["initialised_with"] == {"limits": [4096], "allow_growth": None, "env": "true"}


def test_fake_clamping_is_one_debug_line(fake_tf: Path) -> None:
    steps = """
    tf.config.set_logical_device_configuration(gpu, [LDC(6144), LDC(2048)])
    """
    out = fake_run(fake_tf, steps, env=SLICE | DEBUG)
    assert out["initialised_with"]["limits"] == [3072, 1024]
    assert out["stderr"] == (
        HOOK_LINE + "tensorflow /physical_device:GPU:0: logical devices [6144, 2048] MiB fitted "
        "to the slice: [3072, 1024]\n"
    )


def test_fake_without_the_env_vars_nothing_changes(fake_tf: Path) -> None:
    steps = """
    out["wrapped"] = hasattr(context.Context.set_memory_growth, "_ai_console_slice_mib")
    out["growth"] = attempt(lambda: tf.config.experimental.set_memory_growth(gpu, True))
    """
    out = fake_run(fake_tf, steps, env={})
    assert out["wrapped"] is False
    assert out["growth"] is None
    assert out["initialised_with"] == {"limits": None, "allow_growth": True, "env": None}
    # A fraction alone is no memory limit for TF: left alone as well.
    out = fake_run(fake_tf, steps, env={keys.ENV_GPU_MEMORY_FRACTION: "0.25"})
    assert out["wrapped"] is False
    assert out["initialised_with"]["limits"] is None


def test_fake_without_the_hook_point_caps_at_import(fake_tf: Path) -> None:
    # A TensorFlow whose Context lacks the method the lazy cap wraps: the cap is set at import.
    context = fake_tf / "tensorflow" / "python" / "eager" / "context.py"
    text = context.read_text().replace("_initialize_physical_devices", "_list_devices")
    context.write_text(text)
    out = fake_run(fake_tf, "", env=SLICE | DEBUG)
    assert out["at_import"] == ["list devices"]
    assert out["initialised_with"]["limits"] == [4096]
    assert out["stderr"] == (
        HOOK_LINE + "tensorflow has no eager Context to hook into; capping its GPUs at import\n"
    )


def test_fake_broken_internals_never_break_the_users_calls(fake_tf: Path) -> None:
    # A TensorFlow that keeps its device map under another name: the cap fails, the calls work.
    context = fake_tf / "tensorflow" / "python" / "eager" / "context.py"
    context.write_text(context.read_text().replace("_virtual_device_map", "_logical_map"))
    steps = GROWTH.replace("ENABLE", "True") + (
        'out["set"] = attempt(lambda: tf.config.set_logical_device_configuration(gpu, [LDC(1024)]))'
    )
    out = fake_run(fake_tf, steps)
    assert (out["growth"], out["get_growth"], out["set"]) == (None, True, None)
    assert out["initialised_with"]["limits"] == [1024]
    assert out["stderr"] == ""
    debug = fake_run(fake_tf, steps, env=SLICE | DEBUG)
    assert debug["stderr"].startswith(HOOK_LINE + "could not cap tensorflow GPU memory")
    assert debug["stderr"].count("\n") == 1  # once, not on every tf.config call
