"""``LocalGPUSpawner``: the single-machine hub's spawner (local processes, same allocator)."""

from __future__ import annotations

from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub.utils import maybe_future
from traitlets import Any as AnyTrait
from traitlets import default

from gpu_fraction.enforcement import (
    ENV_CUDA_VISIBLE_DEVICES,
    container_environment,
    merge_pythonpath,
    startup_hook_dir,
)

from .local_form import profile_from_form, render_profile_form
from .slices import GPUSliceMixin, SliceRefused


class LocalGPUSpawner(GPUSliceMixin, SimpleLocalProcessSpawner):
    """Starts each server as a local process on a slice of this machine's GPUs.

    No system users are needed (JupyterHub's simple local spawner). The process sees only its
    GPU (``CUDA_VISIBLE_DEVICES``) and gets the same enforcement environment and start-up hook
    as a pod; the slice is saved in the spawner's state and re-held after a hub restart.
    """

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
        raise SliceRefused(
            f"Profile {slug!r} is not one you can use; choose one of: "
            + ", ".join(p["slug"] for p in profiles),
            400,
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

    async def start(self) -> Any:
        self.slice_message = ""
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
