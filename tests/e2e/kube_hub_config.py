"""JupyterHub config for the Kubernetes-mode tests: the product's own config, plus what a test
machine needs (loopback addresses, a shared password, SQLite, the proxy from node_modules, the
test's namespace)."""

import os
from pathlib import Path

from hub_config.hub import configure
from hub_config.up import free_port

c = get_config()  # noqa: F821
configure(c, mode="kubernetes")

data = Path(os.environ["TEST_HUB_DATA"])
c.JupyterHub.db_url = f"sqlite:///{data / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(data / "cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(data / "proxy.pid")
c.ConfigurableHTTPProxy.command = [os.environ["TEST_HUB_PROXY"]]


c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{free_port()}"
c.JupyterHub.hub_port = int(os.environ.get("TEST_HUB_API_PORT") or 0) or free_port()
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_connect_ip = "127.0.0.1"
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["TEST_HUB_PASSWORD"]
c.SharedPasswordAuthenticator.admin_password = os.environ["TEST_HUB_ADMIN_PASSWORD"]
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"admin"}
c.KubeSpawner.namespace = os.environ["TEST_HUB_NAMESPACE"]
c.KubeSpawner.start_timeout = 90
c.KubeSpawner.http_timeout = 60
c.GPUSliceManager.namespace = os.environ["TEST_HUB_NAMESPACE"]

# The user's storage, as z2jh mounts it, where a test gives every user a claim.
if os.environ.get("TEST_HUB_HOME_CLAIMS"):
    c.KubeSpawner.volumes = [
        {"name": "home", "persistentVolumeClaim": {"claimName": "claim-{username}"}}
    ]
    c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
    c.KubeSpawner.notebook_dir = "/home/jovyan"
