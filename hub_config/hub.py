"""Turn the admin's ``ai-console.yaml`` into JupyterHub configuration.

``jupyterhub_config.py`` calls :func:`configure`. Everything the YAML decides flows from here:
the spawner and its profiles (each user sees only those of their projects), the hub-side
check of project membership and GPU quota at spawn time, JupyterHub groups, custom scopes and
roles, and the allocation API.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import nativeauthenticator

from gpu_fraction.errors import AllocationRefused
from server_extension.app import ENV_JOBS_URL
from spawner import metrics
from spawner.allocation_api import handlers as allocation_handlers
from spawner.manager import GPUSliceManager
from spawner.slices import SliceDecision, SliceRefused

from . import (
    console_page,
    idle_culler,
    jobs_api,
    my_slices_api,
    page_texts,
    settings_env,
    spawn_options_api,
    spawn_texts,
)
from .access import (
    SpawnRefused,
    allows_reference,
    check_spawn,
    image_refusal,
    kubespawner_profile_list,
    profiles_for,
)
from .idle_culler import CULLER_SERVICE
from .loader import ConfigError, load_config
from .model import AiConsoleConfig
from .profile_guard import guard, mark
from .roles import (
    JOBS_SERVICE,
    custom_scopes,
    jupyterhub_groups,
    load_roles,
    server_token_scopes,
)
from .spawn_form import current_availability, make_options_form

#: The GPU-hours history (spawner.usage_history), beside the hub's database.
USAGE_HISTORY_FILE = "ai-console-usage.sqlite"
EXAMPLE_CONFIG = Path(__file__).resolve().parent / "examples" / "ai-console.yaml"
#: Enables the server extension in every single-user server this hub starts.
SERVER_CONFIG_PATH = Path(__file__).resolve().parents[1] / "server_extension" / "jupyter-config"
#: Hub page templates of our own (the login page's sign-up link).
TEMPLATES = Path(__file__).resolve().parent / "templates"
MODES = ("kubernetes", "local")


def _groups_of(spawner: Any) -> list[str]:
    return [group.name for group in spawner.user.groups]


def make_profile_list(config: AiConsoleConfig, html: bool = False):
    """The spawner's profile_list: this user's profiles, with how many this user could start
    now (free slices within their project's quota). ``html``: texts escaped for KubeSpawner's
    own form template (the spawn form of hub_config.spawn_form escapes them itself)."""

    async def profile_list(spawner: Any) -> list[dict]:
        user, groups = spawner.user.name, _groups_of(spawner)
        manager = GPUSliceManager.instance(config=spawner.config)
        spots = await current_availability(config, user, groups, manager, spawner.user_options)
        return kubespawner_profile_list(
            profiles_for(config, user, groups),
            html=html,
            availability={spot.profile.slug: spot for spot in spots},
        )

    return mark(profile_list)


def make_slice_policy(config: AiConsoleConfig):
    """The spawner's slice_policy: membership, image and quota checked on the hub side."""

    async def slice_policy(spawner: Any, profile: dict | None) -> SliceDecision:
        manager = GPUSliceManager.instance(config=spawner.config)
        # Worded in the language of the browser that asked for the spawn.
        translate = page_texts.request_translator(getattr(spawner, "handler", None))
        try:
            decision = check_spawn(
                config,
                spawner.user.name,
                _groups_of(spawner),
                (profile or {}).get("slug") or spawner.user_options.get("profile"),
                spawner.user_options.get("project"),
                manager.in_use_by_project,
                spawner.user_options,
            )
        except SpawnRefused as err:
            metrics.count_refusal(err.code)
            raise SliceRefused(spawn_texts.say(err.reason, translate), 403) from None
        image = getattr(spawner, "image", None)  # after the chosen options were applied
        if image and decision.project and not allows_reference(config, decision.project, image):
            metrics.count_refusal("not_allowed")
            raise SliceRefused(image_refusal(config, decision.project, image), 403)
        project = decision.project.slug if decision.project else ""
        gpu = decision.profile.gpu_for(spawner.user_options)
        if gpu is None:
            return SliceDecision(None, project)
        # min_memory is resolved against the GPUs the allocator knows now; the spawner adds
        # the pod's own CPU and memory guarantees to the request.
        sizes = await manager.memory_by_type() if gpu.min_memory_mib is not None else None
        try:
            request = gpu.slice_request(sizes)
        except AllocationRefused as err:
            metrics.count_refusal("unknown_gpu_type")
            raise SliceRefused(spawn_texts.say(err.reason, translate), 409) from None
        return SliceDecision(request, project)

    return slice_policy


def config_users(config: AiConsoleConfig) -> set[str]:
    """Every user name the YAML mentions (members, course admins, platform admins)."""
    users = set(config.platform_admins)
    for project in config.projects.values():
        users |= set(project.member_users) | set(project.admins)
    return users


def configure(c: Any, mode: str | None = None, config_path: str | None = None) -> AiConsoleConfig:
    """Fill the JupyterHub config object ``c`` from the admin's YAML."""
    env = os.environ
    mode = mode or env.get(settings_env.MODE) or "kubernetes"
    if mode not in MODES:
        sys.exit(f"{settings_env.MODE}={mode!r}: must be one of {', '.join(MODES)}")
    path = config_path or env.get(settings_env.CONFIG) or str(EXAMPLE_CONFIG)
    try:
        config = load_config(path)
    except ConfigError as err:
        # A clean message naming the file and field, not a traceback, and the hub does not start.
        sys.exit(str(err))

    c.GPUSliceManager.policy = config.settings.allocator_policy
    c.GPUSliceManager.project_quotas = {
        slug: str(project.gpu_quota)
        for slug, project in config.projects.items()
        if project.gpu_quota is not None
    }
    slice_policy = make_slice_policy(config)
    if mode == "local":
        _configure_local(c, config)
        c.LocalGPUSpawner.profile_list = make_profile_list(config)
        c.LocalGPUSpawner.options_form = make_options_form(config)
        c.LocalGPUSpawner.slice_policy = slice_policy
        jobs_service = _local_jobs_service(c)
    else:
        c.JupyterHub.spawner_class = "ai-console"
        # Next to jupyterhub.sqlite, in the hub's working directory (z2jh: its volume).
        c.UsageHistory.db_path = USAGE_HISTORY_FILE
        c.GPUSliceManager.inventory_source = "kubernetes"
        c.KubeSpawner.profile_list = make_profile_list(config, html=True)
        # Our form in place of KubeSpawner's template: disabled profiles, the project choice,
        # live counts. Its profile-option fields are KubeSpawner's, parsed by KubeSpawner.
        c.KubeSpawner.options_form = make_options_form(config, with_options=True)
        c.FractionalGPUKubeSpawner.slice_policy = slice_policy
        jobs_service = _external_jobs_service(c)

    c.JupyterHub.load_groups = jupyterhub_groups(config)
    c.JupyterHub.custom_scopes = custom_scopes()
    c.JupyterHub.load_roles = load_roles(config, jobs_service)
    _configure_idle_slices(c, config)
    c.Spawner.server_token_scopes = server_token_scopes(jobs_service)
    # The hub's own API handler for GPU slices (JupyterHub warns that extra handlers are
    # deprecated in favour of services; this one must share the hub's allocator, so it stays).
    c.JupyterHub.extra_handlers = [
        *allocation_handlers,
        *jobs_api.handlers(config),
        *spawn_options_api.handlers(config),
        *console_page.handlers(config),
        *my_slices_api.handlers(config),
    ]
    # The AI Console page's templates first: its page.html adds the link to the page.
    c.JupyterHub.template_paths = [
        str(console_page.TEMPLATES),
        *c.JupyterHub.get("template_paths", []),
    ]
    c.JupyterHub.template_vars = {
        **c.JupyterHub.get("template_vars", {}),
        console_page.NAV_VAR: console_page.nav_link(config),
        console_page.HOME_VAR: console_page.my_slices(config),
        page_texts.TEXTS_VAR: page_texts.catalogues(),
    }
    for warning in config.warnings:
        # Logged before JupyterHub's own logging is set up: stderr, as Python's last resort.
        print(f"[AI Console] warning: {warning}", file=sys.stderr)
    # A profile_list set after this call would silently replace the YAML's: stop instead.
    guard(
        c,
        *(("LocalGPUSpawner",) if mode == "local" else ("KubeSpawner", "FractionalGPUKubeSpawner")),
    )
    return config


def _local_jobs_service(c: Any) -> str:
    """The jobs service as a hub-managed process, with the local backend."""
    env = os.environ
    data_dir = Path(env.get(settings_env.DATA_DIR) or ".").resolve()
    port = int(env.get(settings_env.JOBS_PORT) or 0) or _free_port()
    url = f"http://127.0.0.1:{port}"
    c.JupyterHub.services = [
        *[s for s in c.JupyterHub.get("services", []) if s.get("name") != JOBS_SERVICE],
        {
            "name": JOBS_SERVICE,
            "url": url,
            "command": [
                sys.executable,
                "-m",
                "server_extension.jobs",
                f"--JobsService.db_url=sqlite:///{data_dir / 'ai-console-jobs.sqlite'}",
                f"--LocalBackend.storage_root_template={_home_template(data_dir)}",
                f"--LocalBackend.run_as_os_user={not demo_mode()}",
                "--JobsService.exit_with_parent=True",
            ],
            "display": False,
        },
    ]
    c.Spawner.environment = {
        **c.Spawner.get("environment", {}),
        ENV_JOBS_URL: f"{url}/services/{JOBS_SERVICE}/",
        # Enable the server extension whatever the install left in etc/jupyter.
        "JUPYTER_CONFIG_PATH": str(SERVER_CONFIG_PATH),
    }
    return JOBS_SERVICE


def _configure_idle_slices(c: Any, config: AiConsoleConfig) -> None:
    """Idle slices flagged after settings.idle_after_minutes; their servers stopped after
    settings.stop_idle_after_minutes through the hub's API by the culler service."""
    settings = config.settings
    c.AgentSamples.idle_minutes = settings.idle_after_minutes
    if not settings.stop_idle_after_minutes:
        return
    token = idle_culler.new_token()
    c.AgentSamples.cull_after_minutes = float(settings.stop_idle_after_minutes)
    c.AgentSamples.stop_server = idle_culler.make_stopper(token)
    c.JupyterHub.services = [
        *[s for s in c.JupyterHub.get("services", []) if s.get("name") != CULLER_SERVICE],
        idle_culler.culler_service(token),
    ]
    c.JupyterHub.load_roles = [*c.JupyterHub.load_roles, idle_culler.culler_role()]


def _external_jobs_service(c: Any) -> str | None:
    """Kubernetes: the jobs service runs in its own pod (the chart's); None if not deployed."""
    env = os.environ
    url = env.get(settings_env.JOBS_URL)
    if not url:
        return None
    c.JupyterHub.services = [
        *[s for s in c.JupyterHub.get("services", []) if s.get("name") != JOBS_SERVICE],
        {"name": JOBS_SERVICE, "url": url, "api_token": env.get(settings_env.JOBS_TOKEN, "")},
    ]
    c.Spawner.environment = {
        **c.Spawner.get("environment", {}),
        ENV_JOBS_URL: url.rstrip("/") + f"/services/{JOBS_SERVICE}/",
    }
    return JOBS_SERVICE


def _home_template(data_dir: Path) -> str:
    return str(data_dir / "users" / "{username}")


def _free_port() -> int:
    from .up import free_port

    return free_port()


def _configure_local(c: Any, config: AiConsoleConfig) -> None:
    env = os.environ
    data_dir = Path(env.get(settings_env.DATA_DIR) or ".").resolve()
    c.JupyterHub.spawner_class = "ai-console-local"
    simulate = env.get(settings_env.SIMULATE_GPUS, "")
    c.AgentSamples.urls = env.get(settings_env.AGENT_URLS, "").split()
    c.GPUSliceManager.inventory_source = "simulated" if simulate else "nvml"
    if simulate:
        c.GPUSliceManager.simulated_gpus = simulate
    c.JupyterHub.db_url = f"sqlite:///{data_dir / 'jupyterhub.sqlite'}"
    c.UsageHistory.db_path = str(data_dir / USAGE_HISTORY_FILE)
    c.JupyterHub.cookie_secret_file = str(data_dir / "jupyterhub_cookie_secret")
    c.ConfigurableHTTPProxy.pid_file = str(data_dir / "jupyterhub-proxy.pid")
    proxy = env.get(settings_env.PROXY)
    if proxy:
        c.ConfigurableHTTPProxy.command = [proxy]
    # Each user's files (and job folders) under the data folder, not in /tmp.
    c.SimpleLocalProcessSpawner.home_dir_template = _home_template(data_dir)
    c.Authenticator.allowed_users = config_users(config)
    c.Authenticator.admin_users = set(config.platform_admins)
    if demo_mode():
        c.JupyterHub.authenticator_class = "shared-password"
        if env.get(settings_env.PASSWORD):
            c.SharedPasswordAuthenticator.user_password = env[settings_env.PASSWORD]
        # The shared-password authenticator lets only admin_users log in with the admin password.
        if env.get(settings_env.ADMIN_PASSWORD):
            c.SharedPasswordAuthenticator.admin_password = env[settings_env.ADMIN_PASSWORD]
    else:
        # Accounts of their own: sign-up, a platform admin approves; each server and job runs
        # as the user's own OS account (see hub_config.accounts and spawner.os_users).
        c.JupyterHub.authenticator_class = "hub_config.accounts.ClassAccountsAuthenticator"
        c.ClassAccountsAuthenticator.initial_admin_password = env.get(
            settings_env.ADMIN_PASSWORD, ""
        )
        c.JupyterHub.template_paths = [
            *c.JupyterHub.get("template_paths", []),
            str(TEMPLATES),  # the login page with a sign-up link
            str(Path(nativeauthenticator.__file__).parent / "templates"),
        ]
        c.LocalGPUSpawner.run_as_os_user = True
        c.JupyterHub.template_vars = {"ai_console_accounts": True}  # NativeAuthenticator's links
    c.Spawner.default_url = "/lab"
    # The hub's own interpreter, whether or not its bin folder is on PATH.
    c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
    if demo_mode() and hasattr(os, "geteuid") and os.geteuid() == 0:
        # jupyter_server refuses to run as root without it, and the hub would only time out.
        c.Spawner.args = ["--allow-root"]


def demo_mode() -> bool:
    """The single-machine hub's shared-password demo (``ai-console up --demo``)."""
    return os.environ.get(settings_env.DEMO, "") == "1"
