"""``LocalGPUSpawner``: the single-machine hub's spawner (local processes, same allocator)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner, set_user_setuid
from jupyterhub.utils import maybe_future
from traitlets import Any as AnyTrait
from traitlets import Bool, Unicode, default

from gpu_fraction.enforcement import (
    ENV_CUDA_VISIBLE_DEVICES,
    container_environment,
    merge_pythonpath,
    startup_hook_dir,
)

from . import metrics
from .local_form import profile_from_form, render_profile_form
from .os_users import DEFAULT_PREFIX, OSUserError, ensure_os_user, os_user_name
from .slices import GPUSliceMixin, SliceRefused


class LocalGPUSpawner(GPUSliceMixin, SimpleLocalProcessSpawner):
    """Starts each server as a local process on a slice of this machine's GPUs.

    With ``run_as_os_user`` each server runs as the user's own OS account (made on first
    start); without, as the hub's user (JupyterHub's simple local spawner: the demo). The
    process sees only its GPU (``CUDA_VISIBLE_DEVICES``) and gets the same enforcement
    environment and start-up hook as a pod; the slice is saved in the spawner's state and
    re-held after a hub restart.
    """

    run_as_os_user = Bool(
        False,
        config=True,
        help="""Run each user's server as an OS account of its own (os_user_prefix + the
        user's name, created on first start with a private home at home_dir_template), so
        users read neither each other's files nor the hub's secrets. Needs the hub to run as
        root. `ai-console up` turns it on unless --demo.""",
    )
    os_user_prefix = Unicode(
        DEFAULT_PREFIX,
        config=True,
        help="""Prefix of the OS account names (aic-alice), so a hub user named like a
        system account (root, daemon) never becomes it.""",
    )

    profile_list = AnyTrait(
        [],
        config=True,
        help="""Profiles in KubeSpawner's profile_list shape (display_name, slug,
        description, default, and our ai_console.gpu block), or a callable (spawner) -> list,
        may be async, to show each user only their profiles. The hub configuration sets it
        from ai-console.yaml.""",
    )

    _chosen_profile: dict | None = None

    @default("options_form")
    def _options_form_default(self) -> Any:
        async def form(spawner: LocalGPUSpawner) -> str:
            profiles = await spawner.profiles()
            return render_profile_form(profiles, spawner.user_options.get("profile"))

        return form

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, str]:
        return profile_from_form(formdata)

    async def profiles(self) -> list[dict]:
        profiles = self.profile_list
        if callable(profiles):
            profiles = await maybe_future(profiles(self))
        return list(profiles or [])

    async def _select_profile(self) -> dict | None:
        profiles = await self.profiles()
        if not profiles:
            return None
        slug = self.user_options.get("profile")
        if slug is None:
            return next((p for p in profiles if p.get("default")), profiles[0])
        for profile in profiles:
            if profile.get("slug") == slug:
                return profile
        names = ", ".join(f'"{p.get("display_name") or p["slug"]}"' for p in profiles)
        metrics.count_refusal("not_allowed")
        raise SliceRefused(
            f"There is no profile {slug!r} for you; choose one of {names} in the spawn form.", 400
        )

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        allocation = self.allocation
        if allocation is None:
            env[ENV_CUDA_VISIBLE_DEVICES] = ""  # CPU-only: no GPU at all
            return env
        slice_env = container_environment(
            allocation, startup_path=startup_hook_dir(), in_container=False
        )
        if "PYTHONPATH" in slice_env:
            slice_env["PYTHONPATH"] = merge_pythonpath(
                slice_env["PYTHONPATH"], env.get("PYTHONPATH")
            )
        env.update(slice_env)
        return env

    @property
    def os_user(self) -> str:
        """The OS account this user's server runs as (with ``run_as_os_user``)."""
        return os_user_name(self.user.name, self.os_user_prefix)

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        if not self.run_as_os_user:
            return super().make_preexec_fn(name)
        return set_user_setuid(self.os_user)  # also changes into the account's home

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env = super().user_env(env)
        if self.run_as_os_user:
            env["USER"] = env["LOGNAME"] = self.os_user
        return env

    async def start(self) -> Any:
        self.slice_message = ""
        if self.run_as_os_user:
            # Before any slice is held, so a refusal here leaks nothing.
            try:
                await asyncio.to_thread(
                    ensure_os_user,
                    self.os_user,
                    Path(self.home_dir),
                    f"AI Console user {self.user.name}",
                )
            except OSUserError as err:
                raise RuntimeError(f"cannot start your server: {err}") from None
        self.release_slice("a new start")
        self._chosen_profile = await self._select_profile()
        await self.reserve_slice(self._chosen_profile)
        try:
            result = await super().start()
        except BaseException:
            self.release_slice("the start failed")
            raise
        self.commit_slice()  # the process exists
        return result

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now)
        finally:
            self.release_slice("the server stopped")

    async def poll(self) -> int | None:
        await self.restore_slice()
        status = await super().poll()
        if status is not None:
            self.release_slice("the server exited")
        return status

    async def progress(self) -> Any:
        event = await self.placement_event(
            lambda: bool(self._spawn_future and self._spawn_future.done())
        )
        if event:
            yield event
