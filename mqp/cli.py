"""What every stage's main() shares: quiet libraries, validated params, one-line errors."""

from __future__ import annotations

import functools
import os
import sys
import warnings

from mqp.errors import PipelineError
from mqp.params import load_params


def quiet_libraries() -> None:
    """No walls of library warnings or weight-loading bars (training bars stay). Through the
    environment where transformers is not imported yet, so a stage that never uses it does not
    pay for importing it here."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    transformers = sys.modules.get("transformers")
    if transformers is not None:
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(peft|transformers|torch)\b")
    warnings.filterwarnings("ignore", category=FutureWarning)


def stage(name: str):
    """Decorate a stage's main(params, *args): it gets params.yaml validated; a PipelineError
    prints `name: error: ...` and exits 1, Ctrl-C prints one line and exits 130."""

    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                quiet_libraries()
                return main(load_params(), *args, **kwargs)
            except PipelineError as exc:
                print(f"{name}: error: {exc}", file=sys.stderr)
                sys.exit(1)
            except KeyboardInterrupt:
                print(f"{name}: interrupted; outputs written before are intact", file=sys.stderr)
                sys.exit(130)

        return run

    return wrap
