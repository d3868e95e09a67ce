"""AI Console interpreter-start hook: caps framework GPU memory to the container's slice.

This directory is put on ``PYTHONPATH`` of a notebook or job (a ConfigMap mounted in a pod, or the
package's own ``gpu_fraction/startup`` directory for local processes), so Python imports this
module as ``sitecustomize`` at start-up. It has no ``__init__.py`` on purpose: it is a path entry,
not a package. Standard library only: it runs inside user images that do not have gpu_fraction.

What it does, only when ``AI_CONSOLE_GPU_MEMORY_FRACTION`` or ``AI_CONSOLE_GPU_MEMORY_MIB`` is set:

* installs a ``sys.meta_path`` finder that waits for ``torch`` / ``tensorflow`` to be imported by
  the user's code (it never imports them itself), then
* torch: queues ``torch.cuda.set_per_process_memory_fraction(f, device)`` for every visible
  device through ``torch.cuda._lazy_call``, so it runs when CUDA initialises and not before
  (initialising CUDA at import would break fork-based DataLoader workers and multiprocessing);
* tensorflow: gives every physical GPU one logical device with ``memory_limit`` = the slice MiB;
* removes the finder once both frameworks have been handled.

Whatever happens, it chains to the next ``sitecustomize`` on ``sys.path`` (an image may ship one)
and never breaks an import or a CPU-only interpreter: its own errors are silent, or one line on
stderr when ``AI_CONSOLE_DEBUG`` is set.
"""

import os
import sys

# Same names as gpu_fraction.keys (tests check they agree); duplicated because user images do not
# have the package installed.
_ENV_FRACTION = "AI_CONSOLE_GPU_MEMORY_FRACTION"
_ENV_MIB = "AI_CONSOLE_GPU_MEMORY_MIB"
_ENV_DEBUG = "AI_CONSOLE_DEBUG"
_MIB = 1 << 20


def _debug(message):
    """One line on stderr, only when debugging was asked for."""
    try:
        if os.environ.get(_ENV_DEBUG):
            sys.stderr.write(f"ai-console startup hook: {message}\n")
    except Exception:
        pass


def _read_limits():
    """(fraction or None, MiB or None) from the environment; bad values are ignored."""
    fraction = None
    mib = None
    text = os.environ.get(_ENV_FRACTION, "").strip()
    if text:
        try:
            value = float(text)
            if 0.0 < value <= 1.0:
                fraction = value
            else:
                _debug(f"{_ENV_FRACTION}={text!r} is not in (0, 1]; ignored")
        except ValueError:
            _debug(f"{_ENV_FRACTION}={text!r} is not a number; ignored")
    text = os.environ.get(_ENV_MIB, "").strip()
    if text:
        try:
            value = int(text)
            if value > 0:
                mib = value
            else:
                _debug(f"{_ENV_MIB}={text!r} is not positive; ignored")
        except ValueError:
            _debug(f"{_ENV_MIB}={text!r} is not a whole number; ignored")
    return fraction, mib


def _torch_share(cuda, device, fraction, mib):
    """The fraction of ``device`` to allow: the slice's MiB over the total torch itself uses.

    torch turns a fraction into bytes with the total from cudaMemGetInfo, which under an MPS
    memory limit may be the limit rather than the whole GPU; dividing the slice's MiB by that
    same total keeps the cap at the slice either way (and at 1, no cap, where MPS already holds
    the process to it). Without MiB, or if that fails, the declared fraction is used.
    """
    if mib is not None:
        try:
            return min(1.0, mib * _MIB / float(cuda.mem_get_info(device)[1]))
        except Exception as err:
            _debug(f"torch.cuda.mem_get_info failed ({err!r}); using the declared fraction")
    if fraction is not None:
        return fraction
    return min(1.0, mib * _MIB / float(cuda.get_device_properties(device).total_memory))


def _cap_torch(torch, fraction, mib):
    """Queue the per-process memory cap for when torch initialises CUDA."""
    cuda = getattr(torch, "cuda", None)
    lazy_call = getattr(cuda, "_lazy_call", None)
    if lazy_call is None or not hasattr(cuda, "set_per_process_memory_fraction"):
        _debug("torch.cuda has no _lazy_call/set_per_process_memory_fraction; no cap")
        return

    def apply_cap():
        # Runs inside torch's CUDA initialisation: an exception here would surface as a
        # DeferredCudaCallError in the user's first CUDA call, so nothing may escape.
        try:
            for device in range(cuda.device_count()):
                share = _torch_share(cuda, device, fraction, mib)
                if share < 1.0:
                    cuda.set_per_process_memory_fraction(float(share), device)
        except Exception as err:
            _debug(f"could not cap torch GPU memory: {err!r}")

    lazy_call(apply_cap)


def _cap_tensorflow(tf, fraction, mib):
    """One logical device per GPU with the slice's memory limit (MiB)."""
    if mib is None:
        _debug(f"tensorflow needs {_ENV_MIB} for a memory limit; no cap")
        return
    config = tf.config
    for gpu in config.list_physical_devices("GPU"):
        try:
            config.set_logical_device_configuration(
                gpu, [config.LogicalDeviceConfiguration(memory_limit=mib)]
            )
        except RuntimeError as err:
            # Raised when the devices were already initialised (the user configured them first).
            _debug(f"tensorflow devices already initialised: {err}")


class _ChainedLoader:
    """Wraps a framework's loader to run the cap right after the module finished executing."""

    def __init__(self, loader, on_loaded):
        self.loader = loader
        self._on_loaded = on_loaded

    def __getattr__(self, name):
        if name == "loader":  # not set yet (copy/pickle): avoid endless recursion
            raise AttributeError(name)
        # get_resource_reader, get_source, is_package, ... go to the real loader.
        return getattr(self.loader, name)

    def create_module(self, spec):
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def _restore(self, module):
        # Code that inspects module.__loader__/__spec__.loader must see the real loader.
        try:
            if getattr(module, "__loader__", None) in (None, self):
                module.__loader__ = self.loader
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:
                spec.loader = self.loader
        except Exception:
            pass

    # exec_module is defined by _define_exec_module, from _TRANSPARENT_EXEC.


# The real import runs inside exec_module, so a failing `import torch` would show this frame in
# its traceback. CPython trims importlib's own frames from import tracebacks, recognised by their
# file name (remove_importlib_frames in Python/import.c); compiling exec_module under that name
# makes the traceback exactly what it is without the hook. Errors of the real import propagate
# unchanged: they are the user's to see.
_TRANSPARENT_EXEC = """
def exec_module(self, module):
    self._restore(module)
    self.loader.exec_module(module)
    self._on_loaded(module)
"""


def _define_exec_module():
    namespace = {}
    code = compile(_TRANSPARENT_EXEC, "<frozen importlib._bootstrap_external>", "exec")
    exec(code, namespace)
    _ChainedLoader.exec_module = namespace["exec_module"]


class _FrameworkCapFinder:
    """Meta-path finder that notices the first import of each watched framework."""

    def __init__(self, actions):
        self._actions = dict(actions)  # module name -> callable(module)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self._actions:
            return None
        try:
            for finder in list(sys.meta_path):
                if finder is self:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is None:
                    continue
                if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                    return None  # namespace package or odd loader: let the normal path handle it
                spec.loader = _ChainedLoader(spec.loader, self._loaded)
                return spec
        except Exception as err:
            _debug(f"could not watch the import of {fullname}: {err!r}")
        return None  # not found (or we failed): the normal machinery reports it as usual

    def _loaded(self, module):
        name = getattr(module, "__name__", None)
        action = self._actions.pop(name, None)
        if action is not None:
            try:
                action(module)
            except Exception as err:
                _debug(f"could not cap {name} GPU memory: {err!r}")
        if not self._actions:
            self.remove()

    def remove(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def _install():
    fraction, mib = _read_limits()
    if fraction is None and mib is None:
        return
    actions = {
        "torch": lambda module: _cap_torch(module, fraction, mib),
        "tensorflow": lambda module: _cap_tensorflow(module, fraction, mib),
    }
    _define_exec_module()
    finder = _FrameworkCapFinder(actions)
    sys.meta_path.insert(0, finder)
    # Normally nothing is imported yet; if something already is, cap it now.
    for name in list(actions):
        module = sys.modules.get(name)
        if module is not None:
            finder._loaded(module)


def _same_dir(entry, here):
    if not entry:
        return False  # "" is the script's directory or cwd, not our PYTHONPATH entry
    try:
        return os.path.realpath(entry) == here
    except Exception:
        return False


def _chain():
    """Remove this directory from sys.path and run the next sitecustomize, as site.py would."""
    this_file = globals().get("__file__")
    if not this_file:
        return
    here = os.path.realpath(os.path.dirname(this_file))
    positions = [i for i, entry in enumerate(sys.path) if _same_dir(entry, here)]
    later = list(sys.path[positions[-1] + 1 :]) if positions else list(sys.path)
    for i in reversed(positions):
        del sys.path[i]  # leave sys.path as it would be without the hook
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", later)
    if spec is None or spec.loader is None:
        return
    if spec.origin and os.path.realpath(spec.origin) == os.path.realpath(this_file):
        return
    ours = sys.modules.get("sitecustomize")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        # The image's own hook failed: report it the way site.py does, not silently.
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        if sys.flags.verbose:
            sys.excepthook(*sys.exc_info())
            return
        sys.stderr.write(
            "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
            f"{type(err).__name__}: {err}\n"
        )


try:
    _install()
except Exception as _err:
    _debug(f"not installed: {_err!r}")

try:
    _chain()
except Exception as _err:
    _debug(f"could not chain to the next sitecustomize: {_err!r}")
