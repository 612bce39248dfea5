"""python -m mqp COMMAND [ARGS]: the commands a user types, each with its own --help."""

from __future__ import annotations

import importlib
import sys

# command: (module whose main(argv) runs it, what it does)
COMMANDS = {
    "compare": ("mqp.commands.compare", "two runs pair by pair: accuracy difference [95% CI] and exact McNemar p"),
    "predict": ("mqp.commands.predict", "score question pairs with the trained adapter"),
    "search": ("mqp.commands.search", "look up the already-answered questions closest to a new one"),
    "check": ("mqp.commands.check", "exit 1 unless LoRA beats the base model with McNemar p < 0.05"),
    "kfold": ("mqp.commands.kfold", "pool k-fold experiments over every pair"),
    "sweep": ("mqp.commands.sweep", "compare configurations of a k-fold sweep with a reference"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items())
    return f"usage: python -m mqp COMMAND [ARGS]   (python -m mqp COMMAND --help for its own)\n\ncommands:\n{rows}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] not in COMMANDS:
        sys.exit(f"mqp: error: no command {argv[0]!r}; the commands: {', '.join(COMMANDS)}")
    sys.argv = [f"python -m mqp {argv[0]}", *argv[1:]]  # each command's main() parses sys.argv
    importlib.import_module(COMMANDS[argv[0]][0]).main()


if __name__ == "__main__":
    main()
