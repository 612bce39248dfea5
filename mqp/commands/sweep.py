"""sweep: which configuration is better, by how much, with what certainty. Each configuration of a
k-fold sweep gets its pooled LoRA accuracy [95% CI] over every test pair, and its paired difference
with a reference configuration: both models' answers on the same pairs, fold by fold, summed.

    dvc exp run --queue -S 'data.fold=range(0,5)' -S 'lora.r=2,8,32' -C data/raw evaluate
    OMP_NUM_THREADS=1 dvc queue start -j 2          # wait until `dvc queue status` shows them done
    python -m mqp sweep --csv sweep.csv          # the reference: params.yaml's configuration
    python plots/render_png.py docs/img sweep.csv --template plots/accuracy_ci.json -x lora.r -y accuracy

Seed ensembles: queue the same configuration with other train.seed values, and --ensemble adds a
row per configuration that ran with several seeds: each pair's P(similar) averaged over the seeds.

    dvc exp run --queue -S 'data.fold=range(0,5)' -S 'train.seed=42,43,44' -C data/raw evaluate
    python -m mqp sweep --ensemble --validation        # choose on validation, then:
    python -m mqp sweep --ensemble

Before the test folds are read, screen candidates on one fold's validation split:

    dvc exp run --queue -S 'lora.r=2,8,32' -C data/raw finetune     # finetune only: no test split read
    OMP_NUM_THREADS=1 dvc queue start -j 2
    python -m mqp sweep --validation                              # each run's validation accuracy [95% CI]

The per-pair answers are each run's results/lora/predictions.csv (validation_predictions.csv for
ensembles on validation), read from the run's experiment
(DVC's cache holds the outputs of queued runs) or, for the workspace, from disk.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

import numpy as np
import pandas as pd
import yaml

from mqp.cli import stage
from mqp.commands.kfold import interval, summarise
from mqp.configurations import change_from_today, change_label, configuration_key, find_reference, is_variant_param
from mqp.errors import PipelineError
from mqp.metrics import p_value_text, points_text
from mqp.paths import DATA_REPORT, PARAMS_FILE, TRAIN_REPORT, VALIDATION_PREDICTIONS_CSV
from mqp.pairing import (Ensemble, accuracy_with_ci, answers, paired_over_folds, paired_search, pooled_accuracy, right,
                         search_hits_at, search_verdicts_at)
from mqp.runs import exp_show_json, finished_entries, git_report, predictions_at, todays_params
from mqp.stats import paired_comparison, proportion_ci


def seed_ensembles(summaries: list[dict], read_predictions=predictions_at) -> list[dict]:
    """A summary per configuration that ran with several train.seed values: each fold's answers the
    mean P(similar) of its seeds (Ensemble), pooled over the folds like a configuration's."""
    groups: dict[str, list[dict]] = {}
    for summary in summaries:
        groups.setdefault(configuration_key(summary["params"], ignore=("train.seed",)), []).append(summary)
    ensembles = []
    for members in (group for group in groups.values() if len(group) > 1):
        seeds = "+".join(str(m["params"]["train.seed"]) for m in sorted(members, key=lambda m: m["params"]["train.seed"]))
        revs = [Ensemble(tuple(m["revs"][fold] for m in members), members[0]["params"]["eval.threshold"])
                for fold in range(len(members[0]["revs"]))]
        label = [part for part in members[0]["configuration"].split(", ") if not part.startswith("train.seed=")]
        ensembles.append({"configuration": ", ".join(label + [f"ensemble of train.seed={seeds}"]), "revs": revs, "ensemble": True,
                          "params": {**members[0]["params"], "train.seed": seeds},
                          "lora": pooled_accuracy([answers(rev, read_predictions) for rev in revs])})
    return ensembles


def training_cost(rev: str | Ensemble, read_report=git_report) -> tuple[int | None, float]:
    """(trainable params, training wall seconds) of a run, or of an ensemble's runs together."""
    trains = [read_report(member, TRAIN_REPORT) or {} for member in (rev.revs if isinstance(rev, Ensemble) else [rev])]
    return trains[0].get("trainable_params"), sum(t.get("wall_seconds", np.nan) for t in trains)


def compare(summaries: list[dict], reference: dict, read_predictions=predictions_at, read_report=git_report,
            read_hits=search_hits_at, read_verdicts=search_verdicts_at) -> list[dict]:
    """One row per configuration: its varying params, trainable params, CPU minutes per fold,
    pooled accuracy [CI], and its difference with the reference; where the runs went on to the
    retrieval stage, the same for search recall@1 and for the verdicts of search's method."""
    varying = varying_params([summary["params"] for summary in summaries])
    # The reference's runs are read once, not per configuration.
    read_predictions, read_hits, read_verdicts = map(functools.cache, (read_predictions, read_hits, read_verdicts))
    rows = []
    for summary in summaries:
        costs = [training_cost(rev, read_report) for rev in summary["revs"]]
        lora = summary["lora"]
        versus = paired_over_folds(summary["revs"], reference["revs"], read_predictions)
        rows.append({
            "configuration": summary["configuration"], "change": change_label(summary, reference),
            **{k: summary["params"].get(k) for k in varying},
            "reference": summary is reference,
            "trainable_params": costs[0][0],
            "minutes_per_fold": round(float(np.mean([seconds for _, seconds in costs])) / 60, 2),
            "n": lora["n"], "accuracy": lora["accuracy"],
            "accuracy_ci_low": lora["accuracy_ci_low"], "accuracy_ci_high": lora["accuracy_ci_high"],
            **{f"vs_reference_{key}": value for key, value in versus.items() if key not in ("this_only", "other_only", "n")},
            "this_only": versus["this_only"], "other_only": versus["other_only"],
            **paired_search(summary["revs"], reference["revs"], read_hits),
            **paired_search(summary["revs"], reference["revs"], read_verdicts, "verdict_accuracy"),
        })
    return sorted(rows, key=lambda row: -row["accuracy"])


def markdown(rows: list[dict], reference: dict) -> str:
    lines = [f"Reference: {reference['configuration']}; every configuration on the same {rows[0]['n']} test pairs", "",
             "| change from the reference | trainable params | pooled accuracy [95% CI] | − reference [95% CI] | McNemar p "
             "| search verdicts (else recall@1) [95% CI] | − reference, p | CPU min per fold |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        versus = ("(reference)" if row["reference"] else
                  points_text(row["vs_reference_accuracy_diff"], row["vs_reference_diff_ci_low"], row["vs_reference_diff_ci_high"]))
        p = "" if row["reference"] else p_value_text(row["vs_reference_mcnemar_p"])
        params = f"{row['trainable_params']:,}" if row["trainable_params"] is not None else "?"
        lines.append(f"| {row['change']} | {params} | {row['accuracy']:.4f} "
                     f"{interval(row['accuracy_ci_low'], row['accuracy_ci_high'])} | {versus} | {p} | {search_cells(row)} "
                     f"| {row['minutes_per_fold']} |")
    return "\n".join(lines)


def search_cells(row: dict) -> str:
    """Search's verdict accuracy where the runs have verdicts, else its recall@1 (older runs)."""
    name = "verdict_accuracy" if "verdict_accuracy" in row else "recall_at_1"
    if name not in row:
        return "| "
    hit = f"{row[name]:.4f} {interval(row[f'{name}_ci_low'], row[f'{name}_ci_high'])}"
    if row["reference"]:
        return hit + " | "
    return (f"{hit} | {100 * row[f'vs_reference_{name}_diff']:+.1f} points, "
            f"p {p_value_text(row[f'vs_reference_{name}_mcnemar_p'])}")


def validation_rows(exp_show: list[dict], read_report=git_report) -> list[dict]:
    """Each finished run's validation accuracy [95% CI] at its best epoch (finetune's report), best
    first, with the params that differ between the runs. Where the same params ran more than once
    on a fold (a commit and the workspace, say), the newest run counts."""
    runs, seen = [], set()
    for name, entry, params in newest_first(finished_entries(exp_show)):
        key = (configuration_key(params), params.get("data.fold"))
        train, data = read_report(entry["rev"], TRAIN_REPORT), read_report(entry["rev"], DATA_REPORT)
        if key not in seen and train and data and train.get("epochs"):
            seen.add(key)
            runs.append((name, params, train, data["validation"]["n"]))
    if not runs:
        raise PipelineError("no finished run with a trained adapter: queue some, e.g. `dvc exp run --queue "
                            "-S 'lora.r=2,8,32' -C data/raw finetune`, then `dvc queue start`")
    varying = varying_params([params for _, params, _, _ in runs])
    rows, today = [], todays_params()
    for name, params, train, n in runs:
        low, high = proportion_ci(correct_count(train["validation"]["accuracy"], n), n)
        rows.append({"run": name, "change": change_from_today(params, today), **{k: params.get(k) for k in varying},
                     "data.fold": params.get("data.fold"), "n": n, "accuracy": train["validation"]["accuracy"],
                     "accuracy_ci_low": low, "accuracy_ci_high": high,
                     "f1": train["validation"]["f1"], "best_epoch": train["best_epoch"],
                     "trainable_params": train["trainable_params"], "minutes": round(train["wall_seconds"] / 60, 2)})
    return sorted(rows, key=lambda row: -row["accuracy"])


def correct_count(accuracy: float, n: int) -> int:
    """The pairs a run got right, from the accuracy finetune reported: correct / n rounded to 6
    decimals, which gives the count back exactly for n under 500,000."""
    return round(accuracy * n)


def newest_first(entries: list[tuple[str, dict, dict]]) -> list[tuple[str, dict, dict]]:
    return sorted(entries, key=lambda e: (e[1].get("data") or {}).get("timestamp") or "", reverse=True)


def varying_params(params: list[dict]) -> list[str]:
    """The variant params whose values differ between these runs (among the runs that have them)."""
    return sorted({k for run in params for k in run
                   if is_variant_param(k) and len({json.dumps(p[k]) for p in params if k in p}) > 1})


def validation_ensembles(exp_show: list[dict], read_predictions=None) -> list[dict]:
    """Seed ensembles screened on validation: runs that differ only in train.seed, each fold's
    validation answers the mean P(similar) of the seeds that ran on every such fold (Ensemble, as
    on test), pooled over the folds; beside it each seed alone on the same pairs, and the ensemble
    against the first seed (McNemar on the discordant pairs, summed over the folds). Each is
    labelled by the params where it differs from params.yaml."""
    read_predictions = functools.cache(read_predictions or functools.partial(predictions_at, file=VALIDATION_PREDICTIONS_CSV))
    groups: dict[str, dict[int, dict]] = {}  # configuration: fold: seed: revs (newest first)
    for _, entry, params in newest_first(finished_entries(exp_show)):
        seeds = groups.setdefault(configuration_key(params, ignore=("train.seed",)), {}).setdefault(params.get("data.fold"), {})
        seeds.setdefault(params.get("train.seed"), []).append(entry["rev"])
    ensembles = {}
    for config, by_fold in groups.items():
        folds = sorted(fold for fold, seeds in by_fold.items() if len(seeds) > 1)
        seeds = sorted(set.intersection(*(set(by_fold[fold]) for fold in folds))) if folds else []
        if len(seeds) < 2:
            continue
        try:
            revs = [[newest_readable(by_fold[fold][seed], read_predictions) for seed in seeds] for fold in folds]
        except PipelineError as error:  # only runs from before evaluate wrote validation predictions
            print(f"sweep: ensemble of train.seed {seeds} left out: {error}", file=sys.stderr)
            continue
        threshold = json.loads(config)["eval.threshold"]
        ensemble = pd.concat([answers(Ensemble(tuple(members), threshold), read_predictions) for members in revs])
        alone = [pd.concat([read_predictions(members[i]) for members in revs]) for i in range(len(seeds))]
        ensembles[config] = {"seeds": seeds, "folds": folds, **pooled_accuracy([ensemble]),
                             "each_seed": [pooled_accuracy([a])["accuracy"] for a in alone],
                             "vs_first_seed": paired_comparison(right(ensemble), right(alone[0]))}
    today = todays_params()
    return [{"configuration": change_from_today(json.loads(config), today), **row}
            for config, row in sorted(ensembles.items(), key=lambda item: -item[1]["accuracy"])]


def newest_readable(revs: list[str], read_predictions) -> str:
    """The newest of these runs (the same params) that has predictions to read."""
    for rev in revs[:-1]:
        try:
            read_predictions(rev)
            return rev
        except PipelineError:
            continue
    read_predictions(revs[-1])
    return revs[-1]


def ensemble_line(row: dict) -> str:
    versus = row["vs_first_seed"]
    seeds = "+".join(map(str, row["seeds"]))
    each = ", ".join(f"{seed} {accuracy:.4f}" for seed, accuracy in zip(row["seeds"], row["each_seed"]))
    return (f"{row['configuration']}, ensemble of train.seed={seeds}: validation accuracy {row['accuracy']:.4f} "
            f"{interval(row['accuracy_ci_low'], row['accuracy_ci_high'])} pooled over folds {row['folds']} ({row['n']} pairs); "
            f"each seed alone: {each}; ensemble − seed {row['seeds'][0]} "
            f"{points_text(versus['accuracy_diff'], versus['diff_ci_low'], versus['diff_ci_high'])}, McNemar p {p_value_text(versus['mcnemar_p'])}")


def pooled_validation(rows: list[dict]) -> list[dict]:
    """validation_rows grouped by their change from params.yaml (the folds of one configuration
    together): pooled validation accuracy [95% CI] over all their validation pairs, best first."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["change"], []).append(row)
    pooled = [{"configuration": label, "folds": sorted(r["data.fold"] for r in runs),
               **accuracy_with_ci(sum(correct_count(r["accuracy"], r["n"]) for r in runs), sum(r["n"] for r in runs))}
              for label, runs in groups.items()]
    return sorted(pooled, key=lambda row: -row["accuracy"])


def validation_markdown(rows: list[dict]) -> str:
    lines = ["| run | change from params.yaml | fold | validation accuracy [95% CI] | F1 | best epoch | trainable params "
             "| minutes |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['run']} | {row['change']} | {row['data.fold']} | {row['accuracy']:.4f} "
                     f"{interval(row['accuracy_ci_low'], row['accuracy_ci_high'])} | {row['f1']:.4f} | {row['best_epoch']} "
                     f"| {row['trainable_params']:,} | {row['minutes']} |")
    return "\n".join(lines)


@stage("sweep")
def main(params, argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mqp sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="the configuration to compare with, as its label in the table "
                                            "(e.g. 'lora.r=8'); default: params.yaml's")
    parser.add_argument("--csv", help="write the rows here, for `dvc plots show FILE --template plots/accuracy_ci.json`")
    parser.add_argument("--all-commits", action="store_true", help="read the experiments of every commit that has any")
    parser.add_argument("--validation", action="store_true",
                        help="screen: every finished run's validation accuracy, no test split read")
    parser.add_argument("--ensemble", action="store_true",
                        help="also each configuration that ran with several train.seed values, its seeds' mean P(similar)")
    args = parser.parse_args(argv)
    exp_show = exp_show_json(args.all_commits)
    if args.validation:
        rows = validation_rows(exp_show)
        print(validation_markdown(rows) + "\n")
        for row in pooled_validation(rows):
            print(f"{row['configuration']}: validation accuracy {row['accuracy']:.4f} "
                  f"{interval(row['accuracy_ci_low'], row['accuracy_ci_high'])} pooled over folds {row['folds']} "
                  f"({row['n']} pairs)")
        if args.ensemble:
            for row in validation_ensembles(exp_show):
                print(ensemble_line(row))
        if args.csv:
            pd.DataFrame(rows).to_csv(args.csv, index=False)
        return
    summaries = summarise(exp_show)
    reference = find_reference(summaries, yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8")), args.reference)
    read_predictions = functools.cache(predictions_at)
    if args.ensemble:
        summaries += seed_ensembles(summaries, read_predictions)
    rows = compare(summaries, reference, read_predictions)
    print(markdown(rows, reference))
    if args.csv:
        pd.DataFrame(rows).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
