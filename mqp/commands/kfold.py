"""kfold: pool grouped k-fold experiments into one table per model, over every pair of MQP.

    dvc exp run --queue -S 'data.fold=range(0,5)' -C data/raw evaluate retrieval   # an experiment per test fold
    dvc queue start                                                         # then wait for `dvc queue status`
    python -m mqp kfold                                                  # this table

It reads the finished experiments of the current commit (`dvc exp show --json`; with
--all-commits, of every commit) and each one's reports (metrics/detail/, committed in the
experiment's git commit), groups them by
every param but data.fold (so variants such as `-S model.architecture=bi-encoder` get a table of
their own), and computes, per model, the mean and std across folds and the pooled figures. Pooled
figures are exact: they come from the counts in each fold's report (tp, fp, fn, tn; the
discordant pairs of each paired comparison), summed.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from mqp.cli import stage
from mqp.configurations import TODAY, configuration_key
from mqp.errors import PipelineError
from mqp.files import write_json
from mqp.metrics import p_value_text
from mqp.openset import pool_openset
from mqp.paths import BASE_REPORT, LORA_REPORT, RETRIEVAL_REPORT, ZEROSHOT_REPORT
from mqp.ranking_metrics import pool_retrieval
from mqp.runs import exp_show_json, finished_entries, git_lock, git_report, stage_is_current
from mqp.stats import pooled_paired, proportion_ci, summed

MODELS = {"base": BASE_REPORT, "zeroshot": ZEROSHOT_REPORT, "lora": LORA_REPORT}


def finished_runs(exp_show: list[dict], read_report=git_report, read_lock=git_lock) -> list[dict]:
    """{name, rev, params, metrics, retrieval, timestamp} of each finished experiment (and the
    workspace) with all three models' reports; retrieval None where the run's retrieval stage did
    not run on its own fold and adapter."""
    runs = []
    for name, entry, params in finished_entries(exp_show):
        data = entry.get("data") or {}
        metrics = {model: read_report(entry["rev"], path) for model, path in MODELS.items()}
        if not all(m and "tp" in m.get("test", {}) for m in metrics.values()):
            continue
        if "vs_base" not in metrics["lora"]:
            continue
        retrieval = read_report(entry["rev"], RETRIEVAL_REPORT) if stage_is_current(read_lock(entry["rev"]), "retrieval") else None
        runs.append({"name": name, "rev": entry["rev"], "params": params, "metrics": metrics,
                     "retrieval": retrieval, "timestamp": data.get("timestamp") or ""})
    return runs


def configurations(runs: list[dict]) -> dict[str, dict[int, dict]]:
    """kfold runs grouped by every param but the fold: {config: {fold: run}}; where a fold ran
    more than once, the newest run counts, of those that went on to the retrieval stage if any did."""
    groups: dict[str, dict[int, dict]] = {}
    for run in sorted(runs, key=lambda run: (run["retrieval"] is not None, run["timestamp"]), reverse=True):
        if run["params"].get("data.split") != "kfold":
            continue
        groups.setdefault(configuration_key(run["params"]), {}).setdefault(run["params"]["data.fold"], run)
    return groups


def pooled_model(folds: list[dict], model: str) -> dict:
    tests = [run["metrics"][model]["test"] for run in folds]
    counts = summed(tests, ("tp", "fp", "fn", "tn", "n"))
    correct = counts["tp"] + counts["tn"]
    accuracy = [t["accuracy"] for t in tests]
    auc = [t["roc_auc"] for t in tests]
    low, high = proportion_ci(correct, counts["n"])
    summary = {
        "folds": len(tests), "n": counts["n"],
        "accuracy": round(correct / counts["n"], 6), "accuracy_ci_low": low, "accuracy_ci_high": high,
        "accuracy_mean": round(float(np.mean(accuracy)), 6), "accuracy_std": round(float(np.std(accuracy, ddof=1)), 6),
        "accuracy_per_fold": accuracy,
        "f1": round(2 * counts["tp"] / (2 * counts["tp"] + counts["fp"] + counts["fn"]), 6),
        "roc_auc_mean": round(float(np.mean(auc)), 6), "roc_auc_std": round(float(np.std(auc, ddof=1)), 6),
    }
    for other in ("base", "zeroshot"):
        key = f"vs_{other}"
        if key in folds[0]["metrics"][model]:
            comparisons = [run["metrics"][model][key] for run in folds]
            summary[key] = pooled_paired(comparisons)
            summary[key]["wins"] = sum(c["accuracy_diff"] > 0 for c in comparisons)
    return summary


def summarise(exp_show: list[dict], read_report=git_report) -> list[dict]:
    """One summary per complete configuration: its distinguishing params and each model's figures."""
    groups = configurations(finished_runs(exp_show, read_report))
    if not groups:
        raise PipelineError("no finished kfold experiments with metrics: run `dvc exp run --queue -S "
                            "'data.fold=range(0,5)' -C data/raw evaluate`, then `dvc queue start`, and wait for them")
    configs = {config: json.loads(config) for config in groups}
    missing = {config: sorted(set(range(int(configs[config]["data.folds"]))) - set(by_fold)) for config, by_fold in groups.items()}
    # Label configurations by the params whose values differ between the complete ones (between all,
    # if fewer than two are complete), among those that have them: older commits' runs may lack newer params.
    complete = [configs[config] for config in groups if not missing[config]]
    compared = complete if len(complete) > 1 else list(configs.values())
    varying = {k for params in compared for k in params
               if len({json.dumps(p[k]) for p in compared if k in p}) > 1}
    summaries = []
    for config, by_fold in groups.items():
        params = configs[config]
        folds = int(params["data.folds"])
        label = ", ".join(f"{k}={params.get(k)}" for k in sorted(varying)) or TODAY
        if missing[config]:
            print(f"kfold: {label}: folds {missing[config]} of {folds} have not finished; left out", file=sys.stderr)
            continue
        runs = [by_fold[fold] for fold in range(folds)]
        summary = {"configuration": label, "experiments": [run["name"] for run in runs],
                   "revs": [run["rev"] for run in runs], "params": params,
                   **{model: pooled_model(runs, model) for model in MODELS}}
        if all(run["retrieval"] for run in runs):  # runs queued up to the retrieval stage too
            summary.update(pooled_retrieval(label, runs))
        summaries.append(summary)
    if not summaries:
        raise PipelineError("no configuration has all its folds finished yet: see `dvc queue status`")
    return summaries


def pooled_retrieval(label: str, runs: list[dict]) -> dict:
    """The folds' retrieval rankings and open-set verdicts pooled, where every fold measured the
    same methods (runs of one code version); else none, with a line saying why."""
    details = [run["retrieval"] for run in runs]
    if len({tuple(sorted(detail["methods"])) for detail in details}) > 1:
        print(f"kfold: {label}: the folds' retrieval stages measured other methods (runs of other code versions); "
              "retrieval left out: run the folds again", file=sys.stderr)
        return {}
    pooled = {"retrieval": pool_retrieval(details)}
    if all("openset" in detail for detail in details):
        pooled["openset"] = pool_openset([detail["openset"] for detail in details])
    return pooled


def interval(low: float, high: float, signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"[{fmt.format(low)}, {fmt.format(high)}]"


def markdown(summary: dict) -> str:
    lines = [f"{summary['configuration']} ({summary['lora']['folds']} folds, {summary['lora']['n']} test pairs)", "",
             "| model | pooled accuracy [95% CI] | accuracy mean ± std | pooled F1 | ROC AUC mean ± std "
             "| LoRA − model [95% CI] | McNemar p | folds LoRA wins |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model in MODELS:
        s = summary[model]
        versus = summary["lora"].get(f"vs_{model}")
        paired = (f"{versus['accuracy_diff']:+.3f} {interval(versus['diff_ci_low'], versus['diff_ci_high'], True)} "
                  f"| {p_value_text(versus['mcnemar_p'])} | {versus['wins']} of {s['folds']}") if versus else "| |"
        lines.append(f"| {model} | {s['accuracy']:.4f} {interval(s['accuracy_ci_low'], s['accuracy_ci_high'])} "
                     f"| {s['accuracy_mean']:.4f} ± {s['accuracy_std']:.4f} | {s['f1']:.4f} "
                     f"| {s['roc_auc_mean']:.4f} ± {s['roc_auc_std']:.4f} | {paired} |")
    if "retrieval" in summary:
        lines += ["", retrieval_markdown(summary["retrieval"])]
    if "openset" in summary:
        lines += ["", openset_markdown(summary["openset"], summary["retrieval"])]
    return "\n".join(lines)


def openset_markdown(openset: dict, retrieval: dict) -> str:
    """The pooled open-set table: each method's verdict accuracy, its halves, precision and recall@1,
    its paired difference with zero-shot and with LoRA, and its verdicts had it ranked perfectly (the
    most its score can give, mqp.openset)."""
    first = next(iter(openset["methods"].values()))
    lines = [f"Already answered? ({first['verdicts']} verdicts of {first['n']} queries, thresholds chosen on each "
             f"fold's validation split; search uses {openset['method']})", "",
             "| method | verdict accuracy [95% CI] | duplicates found | \"no match\" right | precision | recall@1 "
             "| − zero-shot [95% CI], McNemar p | − LoRA [95% CI], McNemar p | with a perfect ranking [95% CI] |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for method, m in openset["methods"].items():
        versus = []
        for reference in ("zeroshot", "lora"):
            c = openset["comparisons"].get(f"{method}-{reference}")
            versus.append(f"{c['accuracy_diff']:+.3f} {interval(c['diff_ci_low'], c['diff_ci_high'], True)}, "
                          f"p {p_value_text(c['mcnemar_p'])}" if c else "")
        perfect = ""
        if "perfect_ranking_verdict_accuracy" in m:  # older runs lack it
            bound = "perfect_ranking_verdict_accuracy"
            perfect = f"{m[bound]:.4f} {interval(m[f'{bound}_ci_low'], m[f'{bound}_ci_high'])}"
        lines.append(f"| {method} | {m['verdict_accuracy']:.4f} {interval(m['verdict_accuracy_ci_low'], m['verdict_accuracy_ci_high'])} "
                     f"| {m['found_rate']:.4f} | {m['no_match_rate']:.4f} | {m['precision']:.4f} "
                     f"| {retrieval['methods'][method]['recall_at_1']:.4f} | {versus[0]} | {versus[1]} | {perfect} |")
    return "\n".join(lines)


def retrieval_markdown(pooled: dict) -> str:
    """The pooled retrieval table: each method's recall@1 and MRR, and LoRA against it."""
    first = next(iter(pooled["methods"].values()))
    lines = [f"Retrieval ({first['n']} queries over {pooled['folds']} folds, each fold's test questions the bank)", "",
             "| method | recall@1 [95% CI] | MRR [95% CI] | LoRA − method, recall@1 [95% CI] | McNemar p "
             "| LoRA − method, MRR [95% CI] | paired t p |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for method, m in pooled["methods"].items():
        versus = pooled["comparisons"].get(method)
        paired = "| | | |"
        if versus:
            hit, mrr = versus["recall_at_1"], versus["mrr"]
            paired = (f"{hit['accuracy_diff']:+.3f} {interval(hit['diff_ci_low'], hit['diff_ci_high'], True)} "
                      f"| {p_value_text(hit['mcnemar_p'])} | {mrr['diff']:+.3f} "
                      f"{interval(mrr['diff_ci_low'], mrr['diff_ci_high'], True)} | {p_value_text(mrr['t_test_p'])} |")
        lines.append(f"| {method} | {m['recall_at_1']:.4f} {interval(m['recall_at_1_ci_low'], m['recall_at_1_ci_high'])} "
                     f"| {m['mrr']:.4f} {interval(m['mrr_ci_low'], m['mrr_ci_high'])} | {paired}")
    return "\n".join(lines)


@stage("kfold")
def main(params, argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mqp kfold", description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the summaries to this JSON file")
    parser.add_argument("--all-commits", action="store_true", help="read the experiments of every commit that has any")
    args = parser.parse_args(argv)
    summaries = summarise(exp_show_json(args.all_commits))
    print("\n\n".join(markdown(summary) for summary in summaries))
    if args.json:
        write_json(args.json, {"configurations": summaries})


if __name__ == "__main__":
    main()
