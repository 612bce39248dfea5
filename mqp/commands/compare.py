"""compare: two runs pair by pair on the same test pairs, from the predictions each stored.

    python -m mqp compare A B       # A, B: an experiment's name, a commit or branch (HEAD), or workspace

Each run's test accuracy [95% CI], then A − B: the difference in points [95% CI] and the exact
McNemar p, from the pairs only one of them got right: what `python -m mqp sweep` computes for
two configurations, here for any two runs of one fold.
"""

from __future__ import annotations

import argparse

from mqp.cli import stage
from mqp.metrics import p_value_text, points_text
from mqp.pairing import correct_by_pair, paired_answers
from mqp.runs import WORKSPACE, predictions_at, resolve_run
from mqp.stats import proportion_ci


def comparison(a: str, b: str, read_predictions=predictions_at) -> dict:
    """Runs a and b (resolved revs): each one's accuracy and interval, and paired_answers' figures."""
    right = {name: correct_by_pair(read_predictions(rev)) for name, rev in (("a", a), ("b", b))}
    result = paired_answers(right["a"], right["b"])
    for name, correct in right.items():
        result[f"{name}_accuracy"] = round(float(correct.mean()), 6)
        result[f"{name}_ci"] = proportion_ci(int(correct.sum()), len(correct))
    return result


def report(name_a: str, name_b: str, result: dict) -> str:
    width = max(len(name_a), len(name_b))
    lines = [f"compare: the same {result['n']} test pairs in both runs"]
    for name, key in ((name_a, "a"), (name_b, "b")):
        low, high = result[f"{key}_ci"]
        lines.append(f"{name:<{width}}  accuracy {result[f'{key}_accuracy']:.4f} [{low:.4f}, {high:.4f}]")
    lines.append(f"{name_a} − {name_b}: {points_text(result['accuracy_diff'], result['diff_ci_low'], result['diff_ci_high'])}, "
                 f"exact McNemar p {p_value_text(result['mcnemar_p'])} "
                 f"({result['this_only']} pairs only {name_a} got right, {result['other_only']} only {name_b})")
    return "\n".join(lines)


@stage("compare")
def main(params, argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mqp compare", description=__doc__.splitlines()[0])
    parser.add_argument("a", help=f"a run: an experiment's name, a commit or branch (HEAD), or {WORKSPACE}")
    parser.add_argument("b", help="the run to compare it with")
    args = parser.parse_args(argv)
    print(report(args.a, args.b, comparison(resolve_run(args.a), resolve_run(args.b))))
