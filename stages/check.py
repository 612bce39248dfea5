"""check: exit 1 unless LoRA beats the base model (and zero-shot, when run) on test accuracy and F1.

CI runs it after `dvc repro`; `python -m stages.check` works the same for you.
"""

import json
import sys

from stages.paths import BASE_METRICS, LORA_METRICS, ZEROSHOT_METRICS


def main() -> int:
    lora = json.loads(LORA_METRICS.read_text())["test"]
    rivals = {"base": BASE_METRICS, "zero-shot": ZEROSHOT_METRICS}
    failures = []
    for name, path in rivals.items():
        if not path.exists():
            continue
        other = json.loads(path.read_text())["test"]
        for key in ("accuracy", "f1"):
            verdict = "beats" if lora[key] > other[key] else "does NOT beat"
            print(f"check: LoRA test {key} {lora[key]:.4f} {verdict} {name} {other[key]:.4f}")
            if lora[key] <= other[key]:
                failures.append(f"{key} vs {name}")
    if failures:
        print(f"check: failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
