"""Environment variables through which ``ai-console up`` (or a Helm chart) tells
``jupyterhub_config.py`` what to run. Each is optional; the defaults suit a Kubernetes hub."""

#: "kubernetes" (FractionalGPUKubeSpawner, inventory from nodes) or "local" (LocalGPUSpawner).
MODE = "AI_CONSOLE_MODE"
#: Path of the admin's ai-console.yaml (default: the example shipped with the package).
CONFIG = "AI_CONSOLE_CONFIG"
#: Folder for the SQLite database and cookie secret (local mode).
DATA_DIR = "AI_CONSOLE_DATA_DIR"
#: configurable-http-proxy executable (local mode).
PROXY = "AI_CONSOLE_PROXY"
#: Shared password for users and the platform admins' password (local mode).
PASSWORD = "AI_CONSOLE_PASSWORD"
ADMIN_PASSWORD = "AI_CONSOLE_ADMIN_PASSWORD"
#: "1": the single-machine hub's shared-password demo, every server as the hub's OS user;
#: otherwise (the default) accounts of their own and each server as its own OS user.
DEMO = "AI_CONSOLE_DEMO"
#: Simulated GPU declaration (local mode), e.g. "RTX3090:24576x2"; empty: read NVML.
SIMULATE_GPUS = "AI_CONSOLE_SIMULATE_GPUS"
#: Node agents' /metrics URLs, space-separated (local mode; ``ai-console up --agent-url``).
AGENT_URLS = "AI_CONSOLE_AGENT_URLS"
#: Port of the jobs service on this machine (local mode); default: a free one.
JOBS_PORT = "AI_CONSOLE_JOBS_PORT"
#: Kubernetes: URL of the jobs service as servers and the hub reach it, and its API token.
JOBS_URL = "AI_CONSOLE_JOBS_URL"
JOBS_TOKEN = "AI_CONSOLE_JOBS_TOKEN"
