"""check: exit 1 unless LoRA beats the base model on test accuracy with McNemar p < 0.05.

CI runs it after `dvc repro`; `python -m mqp check` works the same for you. It reports LoRA
against the zero-shot baseline the same way; that one informs, it does not gate.
"""

from mqp.cli import stage
from mqp.errors import PipelineError
from mqp.files import read_json
from mqp.paths import LORA_REPORT

ALPHA = 0.05
GATES = {"base": True, "zeroshot": False}  # compared model: must LoRA beat it?


def verdict(name: str, comparison: dict) -> tuple[bool, str]:
    """Whether LoRA is significantly better, and the line that says so."""
    diff, p = comparison["accuracy_diff"], comparison["mcnemar_p"]
    beats = diff > 0 and p < ALPHA
    return beats, (f"check: LoRA vs {name}: accuracy {diff:+.4f} [{comparison['diff_ci_low']:+.4f}, "
                   f"{comparison['diff_ci_high']:+.4f}], McNemar p {p:.3g} ({comparison['this_only']} pairs only "
                   f"LoRA got right, {comparison['other_only']} only {name}): "
                   f"{'significantly better' if beats else 'NOT significantly better'}")


@stage("check")
def main(params) -> None:
    lora = read_json(LORA_REPORT, "evaluate")
    failures = []
    for name, required in GATES.items():
        if f"vs_{name}" not in lora:
            raise PipelineError(f"{LORA_REPORT} has no vs_{name} comparison: run `dvc repro`")
        beats, line = verdict(name, lora[f"vs_{name}"])
        print(line)
        if required and not beats:
            failures.append(name)
    if failures:
        raise PipelineError(f"LoRA is not significantly better than {', '.join(failures)} (p < {ALPHA} required)")


if __name__ == "__main__":
    main()
