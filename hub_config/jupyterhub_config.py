"""JupyterHub configuration of AI Console: everything follows from the admin's ai-console.yaml.

Run with ``jupyterhub -f <this file>``; ``ai-console up`` does that for the single-machine hub.
Settings come from the environment (see ``hub_config.settings_env``): AI_CONSOLE_MODE
("kubernetes" or "local"), AI_CONSOLE_CONFIG (the YAML), and for local mode the data folder,
proxy, passwords and simulated GPUs. Add your own ``c.…`` lines after the call to override.
"""

from hub_config.hub import configure

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
configure(c)
