"""The ``ai-console`` command.

Subcommands are dispatched by name so each stays in the package that owns it; heavy imports
happen only for the subcommand that runs.
"""

from __future__ import annotations

import sys

USAGE = """usage: ai-console <command> [options]

commands:
  up       run the hub on this machine: local servers on GPU slices, SQLite
           (ai-console up --help)
  agent    run the node agent: GPU metrics, process-to-pod mapping, over-limit policy
           (ai-console agent --help)
"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command == "up":
        from .up import main as up_main

        return up_main(rest)
    if command == "agent":
        from gpu_fraction.agent.main import main as agent_main

        return agent_main(rest)
    print(f"ai-console: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
