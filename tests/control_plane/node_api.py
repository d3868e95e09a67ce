"""The process kubelet's asynchronous API client: one per node, as ``system:node:<name>``, so
the Node authorizer and NodeRestriction judge every call as they judge a real kubelet's."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .api import ApiError, Credentials, resource_path


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
