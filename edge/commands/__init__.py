"""Sub-commands of the ``emotion-edge`` CLI, one module each.

Each module defines ``register(subparsers)`` that adds its parser and sets ``func`` to a callable
taking the parsed namespace and returning the exit code.  Modules must import heavy dependencies
inside ``func``, not at module level, so ``emotion-edge --help`` stays fast on a Pi.
"""

#: Module names under ``edge.commands``, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "classify",
    "classify_face",
    "run",
    "check",
    "adapt",
    "inspect",
    "install_service",
)
