"""Where tests keep what a person looks at afterwards: component logs, screenshots."""

from __future__ import annotations

import os
from pathlib import Path

ARTIFACTS = Path(os.environ.get("AI_CONSOLE_TEST_ARTIFACTS", ".test-artifacts"))
