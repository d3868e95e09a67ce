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
* tensorflow (needs ``AI_CONSOLE_GPU_MEMORY_MIB``): at import it only wraps three methods of the
  eager ``Context`` (``tensorflow/python/eager/context.py``), which every ``tf.config`` function
  calls into; it lists no device and does not initialise CUDA. When TF itself first lists its
  physical devices (``Context._initialize_physical_devices``: the user's
  ``tf.config.list_physical_devices`` or any other ``tf.config`` call, or the context's
  initialisation on the first op, whichever comes first), every GPU without a configuration gets
  one logical device with ``memory_limit`` = the slice's MiB. Then, until TF initialises the
  context:

  - ``tf.config.experimental.set_memory_growth(gpu, True)`` works (TF alone would raise, as it
    refuses growth on a GPU with logical devices) and means growth within the slice: the limit
    stays and ``TF_FORCE_GPU_ALLOW_GROWTH=true`` is set in ``os.environ``, which TF's GPU
    allocator reads when the context initialises (unless the user set that variable
    themselves); ``get_memory_growth`` answers what was set. ``False`` works too;
  - ``tf.config.set_logical_device_configuration(gpu, configs)`` is honoured when the limits fit
    in the slice; over it, each limit is scaled down by the same factor; a ``memory_limit`` of
    None stands for the whole slice; ``None`` or ``[]`` gives back the slice's own configuration;
  - ``get_logical_device_configuration`` shows the slice's configuration where the user set none;
  - everything else, and every error TF raises (unknown devices, CPU devices, changes after the
    context was initialised), is TF's own.

  If the installed TF lacks those methods, the old way is used: the logical devices are set at
  import (which lists the GPUs), with a line on stderr when debugging;
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


# --- tensorflow ----------------------------------------------------------------------------------

# The eager Context methods the cap works through (tensorflow/python/eager/context.py). Every
# tf.config function is a thin call into one of them (tf.config.experimental.set_memory_growth is
# context.context().set_memory_growth, ...), so wrapping them here covers every public alias.
_TF_HOOK_POINTS = (
    "_initialize_physical_devices",
    "set_memory_growth",
    "set_logical_device_configuration",
)
_TF_MARK = "_ai_console_slice_mib"  # set on each wrapper: the slice's MiB
_TF_SLICES = "_ai_console_slices"  # on a Context: {GPU PhysicalDevice: the slice's config list}
_TF_GAVE_UP = "_ai_console_cap_failed"  # on a Context where applying the slice failed
_TF_GROWTH_ENV = "TF_FORCE_GPU_ALLOW_GROWTH"
_tf_growth_env = {"ours": None}  # the value the hook last wrote to TF_FORCE_GPU_ALLOW_GROWTH


def _cap_tensorflow(tf, fraction, mib):
    """Wrap TensorFlow's eager Context so each GPU gets the slice when TF discovers its devices."""
    if mib is None:
        _debug(f"tensorflow needs {_ENV_MIB} for a memory limit; no cap")
        return
    context = sys.modules.get("tensorflow.python.eager.context")
    cls = getattr(context, "Context", None)
    configuration = getattr(context, "LogicalDeviceConfiguration", None)
    if (
        cls is None
        or configuration is None
        or not all(callable(getattr(cls, name, None)) for name in _TF_HOOK_POINTS)
    ):
        _debug("tensorflow has no eager Context to hook into; capping its GPUs at import")
        _cap_tensorflow_at_import(tf, mib)
        return
    if getattr(cls._initialize_physical_devices, _TF_MARK, None) is not None:
        return  # already wrapped (the hook ran twice in this interpreter)
    _wrap_tensorflow_context(cls, configuration, mib)


def _cap_tensorflow_at_import(tf, mib):
    """The fallback: one logical device per GPU with the slice's memory limit, right now."""
    config = tf.config
    for gpu in config.list_physical_devices("GPU"):
        try:
            config.set_logical_device_configuration(
                gpu, [config.LogicalDeviceConfiguration(memory_limit=mib)]
            )
        except RuntimeError as err:
            # Raised when the devices were already initialised (the user configured them first).
            _debug(f"tensorflow devices already initialised: {err}")


def _tf_slice_of(ctx, device):
    """The slice's config list if ``device`` carries it now (not one of the user's), else None."""
    try:
        config = getattr(ctx, _TF_SLICES, {}).get(device)
        if config is not None and ctx._virtual_device_map.get(device) is config:
            return config
    except Exception as err:
        _debug(f"could not read tensorflow's device configuration: {err!r}")
    return None


def _tf_apply_slice(ctx, configuration, mib):
    """Give every GPU without a configuration one logical device of the slice's MiB.

    Runs right after TF listed its physical devices, which it does before anything can configure
    or initialise them; once the context is initialised its configuration is fixed, so nothing is
    changed any more.
    """
    if getattr(ctx, "_context_handle", None) is not None:
        return
    slices = ctx.__dict__.setdefault(_TF_SLICES, {})
    virtual = ctx._virtual_device_map
    for device in ctx._physical_devices or ():
        if getattr(device, "device_type", None) != "GPU" or device in slices:
            continue
        if device in virtual:  # configured from a ConfigProto given to the Context: leave it
            _debug(f"tensorflow {device.name} already has a logical device configuration; kept")
            continue
        config = [configuration(memory_limit=mib)]
        virtual[device] = config
        slices[device] = config


def _tf_sync_growth_env(ctx):
    """TF_FORCE_GPU_ALLOW_GROWTH=true while any capped GPU asked for memory growth.

    TF ignores memory growth on a GPU with logical devices configured, but its GPU allocator reads
    this variable when it is created (at context initialisation) and then grows on demand up to
    the logical device's memory_limit. A value the user set themselves is left alone, as TF lets
    it override the configuration too.
    """
    current = os.environ.get(_TF_GROWTH_ENV)
    ours = _tf_growth_env["ours"]
    if current is not None and current != ours:
        return
    growth = ctx._memory_growth_map or {}
    if any(growth.get(device) for device in getattr(ctx, _TF_SLICES, {})):
        os.environ[_TF_GROWTH_ENV] = _tf_growth_env["ours"] = "true"
    elif current is not None:
        del os.environ[_TF_GROWTH_ENV]
        _tf_growth_env["ours"] = None


def _tf_fit_to_slice(ctx, device, logical_devices, mib):
    """What to pass on for a user's ``set_logical_device_configuration(device, logical_devices)``.

    On a capped GPU: ``[]`` (no configuration, which TF turns into one logical device with the
    whole GPU) or ``None`` gives back the slice's own configuration; a ``memory_limit`` of None
    stands for the whole slice (TF alone rejects both None forms on a GPU; here they mean "no more
    than the slice"); when the limits add up to more than the slice, each is scaled down by the
    same factor (floored, at least 1 MiB), so the user keeps the number of logical devices they
    asked for and their proportions. Anything else (CPU devices, a config within the slice, values
    TF rejects) goes to TF unchanged, so TF's own errors reach the user.
    """
    slices = getattr(ctx, _TF_SLICES, {})
    if getattr(device, "device_type", None) != "GPU" or device not in slices:
        return logical_devices
    if logical_devices is None:
        return slices[device]
    if not isinstance(logical_devices, (list, tuple)):
        return logical_devices
    if not logical_devices:
        return slices[device]
    limits = []
    for logical in logical_devices:
        limit = getattr(logical, "memory_limit", 0)
        if limit is None:
            limit = mib
        elif isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
            return logical_devices  # not ours to judge
        limits.append(limit)
    total = sum(limits)
    none_given = any(getattr(logical, "memory_limit", 0) is None for logical in logical_devices)
    if total <= mib and not none_given:
        return logical_devices
    if total > mib:
        limits = [max(1, int(limit * mib // total)) for limit in limits]
    fitted = [logical._replace(memory_limit=limits[i]) for i, logical in enumerate(logical_devices)]
    given = [getattr(logical, "memory_limit", None) for logical in logical_devices]
    _debug(f"tensorflow {device.name}: logical devices {given} MiB fitted to the slice: {limits}")
    return fitted


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def _wrap_tensorflow_context(cls, configuration, mib):
    """Replace the Context methods in ``_TF_HOOK_POINTS`` with wrappers marked ``_TF_MARK``."""
    # TF has imported threading (context.py uses it); the hook itself imports only os and sys.
    threading = sys.modules.get("threading")
    lock = threading.RLock() if threading is not None else _NoLock()
    initialize = cls._initialize_physical_devices
    set_growth = cls.set_memory_growth
    set_logical = cls.set_logical_device_configuration

    def marked(wrapper, original):
        # What functools.wraps does: tracebacks, help() and inspect see TF's method.
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            if hasattr(original, name):
                setattr(wrapper, name, getattr(original, name))
        wrapper.__dict__.update(getattr(original, "__dict__", {}))
        wrapper.__wrapped__ = original
        setattr(wrapper, _TF_MARK, mib)
        return wrapper

    def initialize_physical_devices(self, *args, **kwargs):
        result = initialize(self, *args, **kwargs)
        try:
            with lock:
                if not self.__dict__.get(_TF_GAVE_UP):
                    _tf_apply_slice(self, configuration, mib)
        except Exception as err:
            self.__dict__[_TF_GAVE_UP] = True  # once: this method runs on every tf.config call
            _debug(f"could not cap tensorflow GPU memory: {err!r}")
        return result

    def set_memory_growth(self, dev, enable):
        self._initialize_physical_devices()
        config = _tf_slice_of(self, dev)
        if config is None:
            return set_growth(self, dev, enable)
        # Growth within the slice: TF refuses memory growth next to a logical device
        # configuration, so its own checks run without the slice's, which then goes back.
        with lock:
            virtual = self._virtual_device_map
            del virtual[dev]
            try:
                result = set_growth(self, dev, enable)
            finally:
                virtual[dev] = config
            try:
                _tf_sync_growth_env(self)
            except Exception as err:
                _debug(f"could not set {_TF_GROWTH_ENV}: {err!r}")
        return result

    def set_logical_device_configuration(self, dev, virtual_devices):
        self._initialize_physical_devices()
        try:
            with lock:
                virtual_devices = _tf_fit_to_slice(self, dev, virtual_devices, mib)
        except Exception as err:
            _debug(f"could not fit tensorflow's logical devices to the slice: {err!r}")
        return set_logical(self, dev, virtual_devices)

    wrappers = {
        "_initialize_physical_devices": marked(initialize_physical_devices, initialize),
        "set_memory_growth": marked(set_memory_growth, set_growth),
        "set_logical_device_configuration": marked(set_logical_device_configuration, set_logical),
    }
    for name, wrapper in wrappers.items():
        setattr(cls, name, wrapper)


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
