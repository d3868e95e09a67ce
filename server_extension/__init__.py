"""AI Console server extension (Run notebook as job), the notebook runner and the jobs service."""


def _jupyter_server_extension_points() -> list[dict]:
    from .app import AiConsoleExtension

    return [{"module": "server_extension.app", "app": AiConsoleExtension}]


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "jupyterhub-ai-console"}]
