"""The sitecustomize start-up hook, run in real interpreters (subprocesses).

The hook must cap torch/tensorflow GPU memory when they are imported, and otherwise be
invisible: same output, same errors, same sys.path/sys.meta_path as a run without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpu_fraction import keys
from gpu_fraction.enforcement import startup_hook_dir

HOOK_DIR = startup_hook_dir()
CAP_ENV = {keys.ENV_GPU_MEMORY_FRACTION: "0.25", keys.ENV_GPU_MEMORY_MIB: "6144"}
TIMEOUT = 180


def run_python(
    code: str,
    *,
    env: dict[str, str] | None = None,
    hook: bool = True,
    path: tuple[str | Path, ...] = (),
    python: str = sys.executable,
    cwd: Path | None = None,
    flags: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; the hook directory first on PYTHONPATH if ``hook``."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AI_CONSOLE_") and k not in {"PYTHONPATH", "CUDA_VISIBLE_DEVICES"}
    }
    clean["PYTHONNOUSERSITE"] = "1"
    clean.update(env or {})
    entries = ([HOOK_DIR] if hook else []) + [str(p) for p in path]
    if entries:
        clean["PYTHONPATH"] = os.pathsep.join(entries)
    return subprocess.run(
        [python, *flags, "-c", textwrap.dedent(code)],
        env=clean,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
    )


def last_json(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- (a) real CPU torch --------------------------------------------------------------------------

TORCH_SCRIPT = """
import torch
x = torch.ones(3)
print(x, x.sum().item(), (x * 2).tolist())
print("cuda initialised:", torch.cuda.is_initialized())
"""


def test_real_torch_runs_unchanged_and_cuda_stays_uninitialised(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    # -W ignore: this CPU wheel warns about a missing numpy on import, with or without the hook.
    flags = ("-W", "ignore")
    plain = run_python(TORCH_SCRIPT, hook=False, flags=flags, cwd=tmp_path)
    hooked = run_python(TORCH_SCRIPT, env=CAP_ENV, flags=flags, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert hooked.returncode == 0, hooked.stderr
    assert hooked.stdout == plain.stdout
    assert "cuda initialised: False" in hooked.stdout
    assert hooked.stderr == ""


def test_real_torch_gets_one_lazy_cap_queued(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    code = """
    import json, sys
    import torch
    print(json.dumps({
        "queued": len(torch.cuda._queued_calls),
        "initialised": torch.cuda.is_initialized(),
        "loader": type(torch.__spec__.loader).__name__,
        "module_loader": type(torch.__loader__).__name__,
    }))
    """
    plain = last_json(run_python(code, hook=False, flags=("-W", "ignore"), cwd=tmp_path))
    hooked = last_json(run_python(code, env=CAP_ENV, flags=("-W", "ignore"), cwd=tmp_path))
    assert hooked["queued"] == plain["queued"] + 1
    assert hooked["initialised"] is False
    # Code inspecting the loader sees the real one, not the hook's wrapper.
    assert hooked["loader"] == plain["loader"] == "SourceFileLoader"
    assert hooked["module_loader"] == "SourceFileLoader"


# --- (b) no torch at all -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter from a throwaway venv: no torch, no site packages of ours."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT
    )
    python = venv / "bin" / "python"
    check = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    assert check.returncode == 1 and "No module named 'torch'" in check.stderr
    return str(python)


@pytest.mark.parametrize("module", ["torch", "tensorflow"])
def test_missing_framework_fails_exactly_as_normal(
    bare_python: str, module: str, tmp_path: Path
) -> None:
    code = f"import json, sqlite3, email.message\nprint('stdlib ok')\nimport {module}\n"
    plain = run_python(code, hook=False, python=bare_python, cwd=tmp_path)
    hooked = run_python(code, env=CAP_ENV, python=bare_python, cwd=tmp_path)
    assert plain.returncode == hooked.returncode == 1
    assert hooked.stdout == plain.stdout == "stdlib ok\n"
    assert hooked.stderr == plain.stderr
    assert hooked.stderr.strip().endswith(f"ModuleNotFoundError: No module named '{module}'")


def test_missing_torch_can_be_caught_by_user_code(bare_python: str, tmp_path: Path) -> None:
    code = """
    try:
        import torch
    except ModuleNotFoundError as err:
        print("fallback:", err.name)
    import collections, decimal
    print("done")
    """
    result = run_python(code, env=CAP_ENV, python=bare_python, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "fallback: torch\ndone\n",
        "",
    )


# --- (c) a fake torch (and tensorflow) that records what the hook does ---------------------------

FAKE_TORCH_INIT = "from . import cuda\n"
FAKE_TORCH_CUDA = """
import types
calls = []
_queued = []
DEVICES = 2

def _lazy_call(fn, **kwargs):
    calls.append(["lazy_call"])
    _queued.append(fn)

def is_available():
    return True

def device_count():
    return DEVICES

TOTAL = 24576 * 2**20

def get_device_properties(device):
    return types.SimpleNamespace(total_memory=TOTAL)

def mem_get_info(device=None):
    return (TOTAL // 2, TOTAL)

def set_per_process_memory_fraction(fraction, device=None):
    calls.append(["fraction", fraction, device])

def _lazy_init():  # what torch does on the first CUDA call
    for fn in _queued:
        fn()
"""
FAKE_TF_INIT = """
class LogicalDeviceConfiguration:
    def __init__(self, memory_limit=None):
        self.memory_limit = memory_limit

class _Config:
    LogicalDeviceConfiguration = LogicalDeviceConfiguration
    calls = []
    fail = False

    def list_physical_devices(self, kind):
        self.calls.append(["list", kind])
        return ["GPU:0", "GPU:1"]

    def set_logical_device_configuration(self, device, configs):
        if self.fail:
            raise RuntimeError("Virtual devices cannot be modified after being initialized")
        self.calls.append(["set", device, [c.memory_limit for c in configs]])

config = _Config()
"""


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    root = tmp_path / "fakes"
    (root / "torch").mkdir(parents=True)
    (root / "torch" / "__init__.py").write_text(FAKE_TORCH_INIT)
    (root / "torch" / "cuda.py").write_text(FAKE_TORCH_CUDA)
    (root / "tensorflow").mkdir()
    (root / "tensorflow" / "__init__.py").write_text(FAKE_TF_INIT)
    return root


RECORD_TORCH = """
import json, sys
out = {"before": "torch" in sys.modules}
out["finders_before"] = [type(f).__name__ for f in sys.meta_path]
import torch
out["after_import"] = list(torch.cuda.calls)
torch.cuda._lazy_init()
out["after_init"] = list(torch.cuda.calls)
print(json.dumps(out))
"""


def test_fake_torch_gets_cap_for_each_device_only_on_cuda_init(fakes: Path) -> None:
    out = last_json(run_python(RECORD_TORCH, env=CAP_ENV, path=(fakes,)))
    assert out["before"] is False  # the hook never imports torch itself
    assert "_FrameworkCapFinder" in out["finders_before"]
    assert out["after_import"] == [["lazy_call"]]  # queued, nothing applied yet
    assert out["after_init"] == [["lazy_call"], ["fraction", 0.25, 0], ["fraction", 0.25, 1]]


def test_fake_torch_cap_from_mib_alone(fakes: Path) -> None:
    env = {keys.ENV_GPU_MEMORY_MIB: "8192"}
    out = last_json(run_python(RECORD_TORCH, env=env, path=(fakes,)))
    third = 8192 / 24576
    assert out["after_init"] == [["lazy_call"], ["fraction", third, 0], ["fraction", third, 1]]


def test_fake_torch_cap_follows_the_total_torch_sees(fakes: Path) -> None:
    # Under an MPS memory limit cudaMemGetInfo may report the limit as the total: the cap must
    # still be the slice's MiB (here: the whole visible total, so no torch cap at all).
    cuda = fakes / "torch" / "cuda.py"
    cuda.write_text(
        cuda.read_text().replace("return (TOTAL // 2, TOTAL)", "return (0, 6144 * 2**20)")
    )
    out = last_json(run_python(RECORD_TORCH, env=CAP_ENV, path=(fakes,)))
    assert out["after_init"] == [["lazy_call"]]
    cuda.write_text(cuda.read_text().replace("6144 * 2**20", "12288 * 2**20"))
    out = last_json(run_python(RECORD_TORCH, env=CAP_ENV, path=(fakes,)))
    assert out["after_init"][1:] == [["fraction", 0.5, 0], ["fraction", 0.5, 1]]


def test_fake_torch_falls_back_to_declared_fraction(fakes: Path) -> None:
    cuda = fakes / "torch" / "cuda.py"
    cuda.write_text(cuda.read_text().replace("def mem_get_info(", "def _no_mem_get_info("))
    env = {keys.ENV_GPU_MEMORY_FRACTION: "0.3", keys.ENV_GPU_MEMORY_MIB: "6144"}
    out = last_json(run_python(RECORD_TORCH, env=env, path=(fakes,)))
    assert out["after_init"][1:] == [["fraction", 0.3, 0], ["fraction", 0.3, 1]]
    only_mib = last_json(run_python(RECORD_TORCH, env={keys.ENV_GPU_MEMORY_MIB: "6144"},
                                    path=(fakes,)))  # fmt: skip
    assert only_mib["after_init"][1:] == [["fraction", 0.25, 0], ["fraction", 0.25, 1]]
    only_fraction = last_json(
        run_python(RECORD_TORCH, env={keys.ENV_GPU_MEMORY_FRACTION: "0.125"}, path=(fakes,))
    )
    assert only_fraction["after_init"][1:] == [["fraction", 0.125, 0], ["fraction", 0.125, 1]]


def test_fake_torch_without_hook_records_nothing(fakes: Path) -> None:
    out = last_json(run_python(RECORD_TORCH, hook=False, env=CAP_ENV, path=(fakes,)))
    assert out["after_init"] == []


def test_fake_torch_without_lazy_call_is_left_alone(fakes: Path) -> None:
    cuda = fakes / "torch" / "cuda.py"
    cuda.write_text(cuda.read_text().replace("def _lazy_call(", "def _not_lazy_call("))
    code = "import torch; print(torch.cuda.calls)"
    result = run_python(code, env=CAP_ENV | {"AI_CONSOLE_DEBUG": ""}, path=(fakes,))
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "")


def test_failing_cap_never_reaches_user_code(fakes: Path) -> None:
    cuda = fakes / "torch" / "cuda.py"
    cuda.write_text(cuda.read_text() + "\ndef device_count():\n    raise RuntimeError('no')\n")
    code = "import torch; torch.cuda._lazy_init(); print('ok')"
    result = run_python(code, env=CAP_ENV, path=(fakes,))
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
    debug = run_python(code, env=CAP_ENV | {"AI_CONSOLE_DEBUG": "1"}, path=(fakes,))
    assert debug.returncode == 0
    assert debug.stderr.startswith("ai-console startup hook: could not cap torch GPU memory")
    assert debug.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "error", ["ImportError('libcuda.so.1: not found')", "RuntimeError('bad build')"]
)
def test_broken_torch_import_fails_exactly_as_normal(fakes: Path, error: str) -> None:
    (fakes / "torch" / "__init__.py").write_text(f"x = 1\nraise {error}\n")
    code = "import torch"
    plain = run_python(code, hook=False, env=CAP_ENV, path=(fakes,))
    hooked = run_python(code, env=CAP_ENV, path=(fakes,))
    assert plain.returncode == hooked.returncode == 1
    assert hooked.stderr == plain.stderr  # not even an extra traceback line
    assert error.split("(")[0] in hooked.stderr
    # A later retry goes through the hook again and fails the same way.
    retry = "try:\n    import torch\nexcept Exception:\n    pass\nimport torch"
    assert run_python(retry, env=CAP_ENV, path=(fakes,)).stderr.endswith(
        plain.stderr.splitlines()[-1] + "\n"
    )


def test_fake_tensorflow_gets_memory_limit_and_finder_leaves(fakes: Path) -> None:
    code = """
    import json, sys
    before = [type(f).__name__ for f in sys.meta_path]
    import tensorflow as tf
    middle = [type(f).__name__ for f in sys.meta_path]
    import torch
    after = [type(f).__name__ for f in sys.meta_path]
    print(json.dumps({"calls": tf.config.calls, "before": before, "middle": middle,
                      "after": after}))
    """
    out = last_json(run_python(code, env=CAP_ENV, path=(fakes,)))
    assert out["calls"] == [["list", "GPU"], ["set", "GPU:0", [6144]], ["set", "GPU:1", [6144]]]
    assert "_FrameworkCapFinder" in out["before"]
    assert "_FrameworkCapFinder" in out["middle"]  # still waiting for torch
    assert "_FrameworkCapFinder" not in out["after"]  # both done: gone
    names = (
        "import json, sys; print(json.dumps({'after': [type(f).__name__ for f in sys.meta_path]}))"
    )
    plain = last_json(run_python(names, hook=False))
    assert out["after"] == plain["after"]


def test_tensorflow_already_initialised_is_silent(fakes: Path) -> None:
    init = fakes / "tensorflow" / "__init__.py"
    init.write_text(init.read_text() + "config.fail = True\n")
    result = run_python("import tensorflow; print('ok')", env=CAP_ENV, path=(fakes,))
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")


# --- (d) chaining to another sitecustomize -------------------------------------------------------


@pytest.fixture
def other_site(tmp_path: Path) -> Path:
    other = tmp_path / "image-site"
    other.mkdir()
    (other / "sitecustomize.py").write_text("print('image sitecustomize ran')\nMARK = 42\n")
    return other


@pytest.mark.parametrize("env", [CAP_ENV, {}], ids=["caps", "no-caps"])
def test_chains_to_the_next_sitecustomize(other_site: Path, env: dict[str, str]) -> None:
    code = """
    import sitecustomize, sys
    print(sitecustomize.MARK, sitecustomize.__file__)
    print(any(type(f).__name__ == "_FrameworkCapFinder" for f in sys.meta_path))
    """
    result = run_python(code, env=env, path=(other_site,))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "image sitecustomize ran"
    assert lines[1] == f"42 {other_site / 'sitecustomize.py'}"
    assert lines[2] == str(bool(env))
    assert result.stderr == ""


def test_failing_image_sitecustomize_reported_as_python_would(tmp_path: Path) -> None:
    other = tmp_path / "broken-site"
    other.mkdir()
    (other / "sitecustomize.py").write_text("raise RuntimeError('image hook is broken')\n")
    code = "print('still running')"
    plain = run_python(code, hook=False, path=(other,))
    hooked = run_python(code, env=CAP_ENV, path=(other,))
    assert hooked.returncode == plain.returncode == 0
    assert hooked.stdout == plain.stdout == "still running\n"
    assert hooked.stderr == plain.stderr
    assert "RuntimeError: image hook is broken" in hooked.stderr


# --- (e) nothing set: nothing changes ------------------------------------------------------------

STATE = """
import json, sys
print(json.dumps({
    "meta_path": [repr(type(f)) for f in sys.meta_path],
    "path": sys.path,
    "hook": getattr(sys.modules.get("sitecustomize"), "__file__", None),
}))
"""


def test_without_env_vars_the_interpreter_is_unchanged(tmp_path: Path) -> None:
    plain = last_json(run_python(STATE, hook=False, cwd=tmp_path))
    hooked = last_json(run_python(STATE, cwd=tmp_path))
    # It ran: its directory, first on PYTHONPATH, is taken off sys.path again. An interpreter
    # with a sitecustomize of its own (Debian's) has that one chained, and it is the module
    # left in sys.modules, as it would be without the hook.
    assert hooked["path"] == plain["path"]
    assert hooked["hook"] == (plain["hook"] or str(Path(HOOK_DIR) / "sitecustomize.py"))
    assert hooked["meta_path"] == plain["meta_path"]


def test_with_env_vars_only_the_finder_is_added(tmp_path: Path) -> None:
    plain = last_json(run_python(STATE, hook=False, cwd=tmp_path))
    hooked = last_json(run_python(STATE, env=CAP_ENV, cwd=tmp_path))
    assert hooked["meta_path"][1:] == plain["meta_path"]
    assert "_FrameworkCapFinder" in hooked["meta_path"][0]
    assert hooked["path"] == plain["path"]


# --- (f) broken values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {keys.ENV_GPU_MEMORY_FRACTION: "abc"},
        {keys.ENV_GPU_MEMORY_FRACTION: "1.5", keys.ENV_GPU_MEMORY_MIB: "-3"},
        {keys.ENV_GPU_MEMORY_FRACTION: "0", keys.ENV_GPU_MEMORY_MIB: "6 GiB"},
        {keys.ENV_GPU_MEMORY_FRACTION: "nan"},
    ],
)
def test_broken_values_are_ignored(env: dict[str, str], fakes: Path, tmp_path: Path) -> None:
    plain = last_json(run_python(STATE, hook=False, cwd=tmp_path))
    result = run_python(STATE, env=env, cwd=tmp_path)
    assert result.stderr == ""
    assert last_json(result)["meta_path"] == plain["meta_path"]  # nothing to enforce
    torch_run = run_python(RECORD_TORCH, env=env, path=(fakes,))
    assert torch_run.stderr == ""
    assert last_json(torch_run)["after_init"] == []
    debug = run_python("print('ok')", env=env | {"AI_CONSOLE_DEBUG": "1"})
    assert debug.returncode == 0 and debug.stdout == "ok\n"
    assert debug.stderr.startswith("ai-console startup hook: AI_CONSOLE_GPU_MEMORY_")


def test_bad_fraction_with_good_mib_still_caps(fakes: Path) -> None:
    env = {keys.ENV_GPU_MEMORY_FRACTION: "abc", keys.ENV_GPU_MEMORY_MIB: "6144"}
    out = last_json(run_python(RECORD_TORCH, env=env, path=(fakes,)))
    assert out["after_init"][1:] == [["fraction", 0.25, 0], ["fraction", 0.25, 1]]


def test_broken_value_with_real_torch(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    env = {keys.ENV_GPU_MEMORY_FRACTION: "abc"}
    result = run_python(TORCH_SCRIPT, env=env, flags=("-W", "ignore"), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert "cuda initialised: False" in result.stdout
