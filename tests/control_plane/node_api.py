"""The process kubelet's asynchronous API client: one per node, as ``system:node:<name>``, so
the Node authorizer and NodeRestriction judge every call as they judge a real kubelet's."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from .api import ApiError, Credentials, resource_path

log = logging.getLogger(__name__)


class NodeApi:
    """JSON over HTTPS with a node's client certificate."""

    def __init__(self, url: str, ca: str, credentials: Credentials) -> None:
        self.url = url.rstrip("/")
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(str(credentials.cert), str(credentials.key))
        self._ssl = context
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=50),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body)
        async with self.session.request(
            method,
            self.url + path,
            data=data,
            params=params,
            headers={"Content-Type": content_type, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            text = await response.text()
            try:
                decoded = json.loads(text) if text else {}
            except ValueError:
                decoded = text
            if response.status >= 400:
                raise ApiError(response.status, decoded)
            return decoded

    async def get(self, plural: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return await self.request("GET", resource_path(plural, namespace, name))
        except ApiError as err:
            if err.code == 404:
                return None
            raise

    async def create(self, plural: str, body: dict, namespace: str | None = None) -> dict:
        return await self.request("POST", resource_path(plural, namespace), body)

    async def merge_patch(
        self, plural: str, name: str, body: dict, namespace: str | None = None
    ) -> dict:
        return await self.request(
            "PATCH",
            resource_path(plural, namespace, name),
            body,
            "application/merge-patch+json",
        )

    async def delete(self, plural: str, name: str, namespace: str | None, options: dict) -> None:
        await self.request("DELETE", resource_path(plural, namespace, name), options)

    async def watch(
        self, plural: str, namespace: str | None = None, **params: str
    ) -> AsyncIterator[dict]:
        """Events of one watch request, until the server ends it."""
        query = {"watch": "true", "allowWatchBookmarks": "true", **params}
        async with self.session.get(
            self.url + resource_path(plural, namespace), params=query
        ) as response:
            if response.status >= 400:
                raise ApiError(response.status, await response.text())
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)

    async def list_and_watch(
        self,
        plural: str,
        on_list: Callable[[list[dict]], Awaitable[None]],
        on_event: Callable[[str, dict], Awaitable[None]],
        what: str,
    ) -> None:
        """Follow every ``plural`` of the cluster, as an informer does, until cancelled: a list
        (``on_list`` gets its items), then a watch from its version (``on_event`` gets each
        ADDED, MODIFIED or DELETED); listed again after an expired watch or a failure."""
        version: str | None = None
        while True:
            try:
                if version is None:
                    listed = await self.request("GET", resource_path(plural, None))
                    version = listed["metadata"]["resourceVersion"]
                    await on_list(listed["items"])
                async for event in self.watch(
                    plural, resourceVersion=version, timeoutSeconds="240"
                ):
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":  # the version expired: list again
                        version = None
                        break
                    version = obj["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK":
                        await on_event(kind, obj)
            except asyncio.CancelledError:
                raise
            except (ApiError, OSError, ValueError, KeyError) as err:
                log.warning("%s: %s", what, err)
                version = None
                await asyncio.sleep(0.5)
