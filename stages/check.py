"""check: exit 1 unless LoRA beats the base model on test accuracy and F1.

CI runs it after `dvc repro`; `python -m stages.check` works the same for you. It also reports
LoRA against the zero-shot baseline (the honest bar), without failing on it: on MQP's grouped
split the two are within a few test pairs of each other (see README).
"""

import json
import sys

from stages.paths import BASE_METRICS, LORA_METRICS, ZEROSHOT_METRICS

GATES = {"base": (BASE_METRICS, True), "zero-shot": (ZEROSHOT_METRICS, False)}  # name: (file, must beat)


def main() -> int:
    lora = json.loads(LORA_METRICS.read_text())["test"]
    failures = []
    for name, (path, required) in GATES.items():
        if not path.exists():
            continue
        other = json.loads(path.read_text())["test"]
        for key in ("accuracy", "f1"):
            beats = lora[key] > other[key]
            print(f"check: LoRA test {key} {lora[key]:.4f} {'beats' if beats else 'does NOT beat'} {name} {other[key]:.4f}")
            if required and not beats:
                failures.append(f"{key} vs {name}")
    if failures:
        print(f"check: failed: LoRA does not beat {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
