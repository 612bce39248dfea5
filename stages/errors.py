"""One clear line instead of a traceback for the problems a user can fix."""

from __future__ import annotations

import functools
import sys


class PipelineError(Exception):
    """A problem the user can fix: bad input, bad params, a missing file. Printed as one line."""


def cli(stage: str):
    """Decorate a stage's main(): a PipelineError prints `stage: error: ...` and exits 1."""

    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except PipelineError as exc:
                print(f"{stage}: error: {exc}", file=sys.stderr)
                sys.exit(1)
            except KeyboardInterrupt:
                print(f"{stage}: interrupted; outputs written before are intact", file=sys.stderr)
                sys.exit(130)

        return run

    return wrap
