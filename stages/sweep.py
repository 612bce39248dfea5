"""sweep: which configuration is better, by how much, with what certainty. Each configuration of a
k-fold sweep gets its pooled LoRA accuracy [95% CI] over every test pair, and its paired difference
with a reference configuration: both models' answers on the same pairs, fold by fold, summed.

    dvc exp run --queue -S 'data.fold=range(0,5)' -S 'lora.r=2,8,32' -C data/raw evaluate
    OMP_NUM_THREADS=1 dvc queue start -j 2          # wait until `dvc queue status` shows them done
    python -m stages.sweep --csv sweep.csv          # the reference: params.yaml's configuration
    python plots/render_png.py docs/img sweep.csv --template plots/accuracy_ci.json -x lora.r -y accuracy

Seed ensembles: queue the same configuration with other train.seed values, and --ensemble adds a
row per configuration that ran with several seeds: each pair's P(similar) averaged over the seeds.

    dvc exp run --queue -S 'data.fold=range(0,5)' -S 'train.seed=42,43,44' -C data/raw evaluate
    python -m stages.sweep --ensemble --validation        # choose on validation, then:
    python -m stages.sweep --ensemble

Before the test folds are read, screen candidates on one fold's validation split:

    dvc exp run --queue -S 'lora.r=2,8,32' -C data/raw finetune     # finetune only: no test split read
    OMP_NUM_THREADS=1 dvc queue start -j 2
    python -m stages.sweep --validation                              # each run's validation accuracy [95% CI]

The per-pair answers are each run's results/lora/predictions.csv (validation_predictions.csv for
ensembles on validation), read from the run's experiment
(DVC's cache holds the outputs of queued runs) or, for the workspace, from disk.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import yaml

from mqp.cli import stage
from mqp.errors import PipelineError
from mqp.metrics import p_value_text
from mqp.paths import (DATA_REPORT, PARAMS_FILE, RANKS_FILE, RETRIEVAL_REPORT, RETRIEVAL_RESULTS, TRAIN_REPORT,
                       VALIDATION_PREDICTIONS_CSV)
from mqp.runs import PAIR, correct_by_pair, paired_answers, predictions_at, read_run_output
from mqp.stats import paired_comparison, paired_counts, proportion_ci
from stages.kfold import (exp_show_json, finished_entries, flatten, git_lock, git_report, interval,
                          is_variant_param, stage_is_current, summarise, todays_params)

def retrieval_ranks(rev) -> pd.DataFrame | None:
    """A run's results/retrieval/ranks.csv (each test query's ranks and verdicts); None for a run that
    stopped before the retrieval stage (its ranks are its baseline's), and for an ensemble (its seeds'
    embeddings are not averaged)."""
    if isinstance(rev, Ensemble) or not stage_is_current(git_lock(rev), "retrieval"):
        return None
    try:
        return read_run_output(rev, RETRIEVAL_RESULTS / RANKS_FILE, lambda source: pd.read_csv(source, keep_default_na=False))
    except FileNotFoundError:
        return None


def search_hits_at(rev) -> pd.Series | None:
    """Whether LoRA's search ranked each test query's similar rewrite first (recall@1), by query."""
    ranks = retrieval_ranks(rev)
    return None if ranks is None else (ranks["lora_rank_similar"] == 1).set_axis(ranks["query"])


def search_verdicts_at(rev) -> pd.Series | None:
    """Whether each test verdict of the run's search method (retrieval.method) was right, two per
    query: with its rewrite in the bank, then without; None for runs without verdicts."""
    if isinstance(rev, Ensemble):
        return None
    method = ((git_report(rev, RETRIEVAL_REPORT) or {}).get("openset") or {}).get("method")
    ranks = retrieval_ranks(rev) if method else None
    if ranks is None or f"{method}_verdict_found" not in ranks:
        return None
    return pd.concat([ranks[f"{method}_verdict_{half}"].astype(bool).set_axis(ranks["query"] + f" ({half})")
                      for half in ("found", "no_match")])


def paired_search(revs: list, reference_revs: list, read_hits=search_hits_at, name: str = "recall_at_1") -> dict:
    """A configuration's pooled search figure `name` (recall@1, or the verdict accuracy) [95% CI] over
    every fold's queries, and its paired difference with the reference's on the same queries; {} where
    a run of either has none."""
    hits, reference_hits = [read_hits(rev) for rev in revs], [read_hits(rev) for rev in reference_revs]
    if any(h is None for h in hits + reference_hits):
        return {}
    ours = pd.concat(hits)
    theirs = pd.concat([r.reindex(h.index) for h, r in zip(hits, reference_hits)])
    if theirs.isna().any():
        raise PipelineError("the two configurations' searches ran on other queries; compare configurations "
                            "with the same data params")
    low, high = proportion_ci(int(ours.sum()), len(ours))
    versus = paired_comparison(ours.to_numpy(), theirs.to_numpy(dtype=bool))
    return {name: round(float(ours.mean()), 6), f"{name}_ci_low": low, f"{name}_ci_high": high,
            f"vs_reference_{name}_diff": versus["accuracy_diff"], f"vs_reference_{name}_mcnemar_p": versus["mcnemar_p"]}


@dataclass(frozen=True)
class Ensemble:
    """Runs of one fold that differ only in train.seed, answering together: the mean P(similar)."""
    revs: tuple[str, ...]
    threshold: float


def mean_predictions(members: list[pd.DataFrame], threshold: float) -> pd.DataFrame:
    """An ensemble's predictions: each pair's P(similar) averaged over the members, and the answer at threshold."""
    pairs = members[0][PAIR + ["label"]].reset_index(drop=True)
    index = pd.MultiIndex.from_frame(pairs[PAIR])
    probs = np.mean([m.set_index(PAIR)["prob_similar"].reindex(index).to_numpy() for m in members], axis=0)
    if len({len(m) for m in members}) > 1 or np.isnan(probs).any():
        raise PipelineError("the runs of a seed ensemble were tested on other pairs; ensemble runs with the same data params")
    return pairs.assign(prob_similar=probs, predicted=(probs >= threshold).astype(int))


def answers(rev: str | Ensemble, read_predictions=predictions_at) -> pd.DataFrame:
    """A run's predictions, or an ensemble's."""
    if isinstance(rev, Ensemble):
        return mean_predictions([read_predictions(member) for member in rev.revs], rev.threshold)
    return read_predictions(rev)


def paired_over_folds(revs: list, reference_revs: list, read_predictions=predictions_at) -> dict:
    """A configuration against the reference on the same test pairs of every fold: the discordant
    counts summed over the folds, then the paired difference, its interval and McNemar p."""
    totals = np.zeros(3, dtype=int)
    for fold, (rev, reference_rev) in enumerate(zip(revs, reference_revs)):
        try:
            counts = paired_answers(correct_by_pair(answers(rev, read_predictions)),
                                    correct_by_pair(answers(reference_rev, read_predictions)))
        except PipelineError as error:
            raise PipelineError(f"fold {fold}: {error}") from None
        totals += [counts["a_only"], counts["b_only"], counts["n"]]
    return paired_counts(*totals)


def find_reference(summaries: list[dict], params: dict, label: str | None) -> dict:
    """The configuration named by --reference (its label), else the one params.yaml describes
    (params: params.yaml as read, not as validated, whose floats would differ in type from DVC's)."""
    if label is not None:
        found = [s for s in summaries if s["configuration"] == label]
        if not found:
            names = "; ".join(s["configuration"] for s in summaries)
            raise PipelineError(f"no configuration {label!r} among the finished sweeps: {names}")
        return found[0]
    workspace = {k: json.dumps(v) for k, v in flatten(params).items() if is_variant_param(k)}
    for summary in summaries:
        if {k: json.dumps(v) for k, v in summary["params"].items()} == workspace:
            return summary
    raise PipelineError("no finished configuration has params.yaml's values; run its folds too, or pass "
                        "--reference with one of: " + "; ".join(s["configuration"] for s in summaries))


def seed_ensembles(summaries: list[dict], read_predictions=predictions_at) -> list[dict]:
    """A summary per configuration that ran with several train.seed values: each fold's answers the
    mean P(similar) of its seeds (Ensemble), pooled over the folds like a configuration's."""
    groups: dict[str, list[dict]] = {}
    for summary in summaries:
        rest = {k: v for k, v in summary["params"].items() if k != "train.seed"}
        groups.setdefault(json.dumps(rest, sort_keys=True), []).append(summary)
    ensembles = []
    for members in (group for group in groups.values() if len(group) > 1):
        seeds = "+".join(str(m["params"]["train.seed"]) for m in sorted(members, key=lambda m: m["params"]["train.seed"]))
        revs = [Ensemble(tuple(m["revs"][fold] for m in members), members[0]["params"]["eval.threshold"])
                for fold in range(len(members[0]["revs"]))]
        pooled = pd.concat([answers(rev, read_predictions) for rev in revs])
        correct, n = int((pooled["predicted"] == pooled["label"]).sum()), len(pooled)
        low, high = proportion_ci(correct, n)
        label = [part for part in members[0]["configuration"].split(", ") if not part.startswith("train.seed=")]
        ensembles.append({"configuration": ", ".join(label + [f"ensemble of train.seed={seeds}"]), "revs": revs, "ensemble": True,
                          "params": {**members[0]["params"], "train.seed": seeds},
                          "lora": {"n": n, "accuracy": round(correct / n, 6), "accuracy_ci_low": low, "accuracy_ci_high": high}})
    return ensembles


def param_text(value) -> str:
    """A param's value as `-S` takes it: lists as [a,b]."""
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def change_from_today(params: dict, today: dict) -> str:
    """A run's params where they differ from params.yaml's (fold and logging aside), as -S takes
    them; 'params.yaml' where none do."""
    changed = [f"{key}={param_text(value)}" for key, value in sorted(params.items())
               if is_variant_param(key) and json.dumps(value) != json.dumps(today.get(key))]
    return ", ".join(changed) or "params.yaml"


def change_label(summary: dict, reference: dict) -> str:
    """What a configuration changes from the reference: the params whose values differ (e.g.
    'lora.alpha=8, lora.r=2'), a seed ensemble's seeds as such; '(reference)' for the reference."""
    if summary is reference:
        return "(reference)"
    parts = []
    for key, value in sorted(summary["params"].items()):
        if json.dumps(value) == json.dumps(reference["params"].get(key)):
            continue
        ensemble = summary.get("ensemble") and key == "train.seed"
        parts.append(f"ensemble of train.seed={value}" if ensemble else f"{key}={param_text(value)}")
    return ", ".join(parts) or "(same params as the reference)"


def training_cost(rev: str | Ensemble, read_report=git_report) -> tuple[int | None, float]:
    """(trainable params, training wall seconds) of a run, or of an ensemble's runs together."""
    trains = [read_report(member, TRAIN_REPORT) or {} for member in (rev.revs if isinstance(rev, Ensemble) else [rev])]
    return trains[0].get("trainable_params"), sum(t.get("wall_seconds", np.nan) for t in trains)


def compare(summaries: list[dict], reference: dict, read_predictions=predictions_at, read_report=git_report,
            read_hits=search_hits_at, read_verdicts=search_verdicts_at) -> list[dict]:
    """One row per configuration: its varying params, trainable params, CPU minutes per fold,
    pooled accuracy [CI], and its difference with the reference; where the runs went on to the
    retrieval stage, the same for search recall@1 and for the verdicts of search's method."""
    varying = sorted({k for s in summaries for k in s["params"] if len({json.dumps(t["params"].get(k)) for t in summaries}) > 1})
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
            **{f"vs_reference_{key}": value for key, value in versus.items() if key not in ("a_only", "b_only", "n")},
            "this_only": versus["a_only"], "reference_only": versus["b_only"],
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
                  f"{100 * row['vs_reference_accuracy_diff']:+.1f} points "
                  f"[{100 * row['vs_reference_diff_ci_low']:+.1f}, {100 * row['vs_reference_diff_ci_high']:+.1f}]")
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
    (a commit and the workspace, say), the newest run counts."""
    runs, seen = [], set()
    entries = sorted(finished_entries(exp_show), key=lambda e: (e[1].get("data") or {}).get("timestamp") or "", reverse=True)
    for name, entry, params in entries:
        key = json.dumps({k: v for k, v in params.items() if not k.startswith("logging.")}, sort_keys=True)
        train, data = read_report(entry["rev"], TRAIN_REPORT), read_report(entry["rev"], DATA_REPORT)
        if key not in seen and train and data and train.get("epochs"):
            seen.add(key)
            runs.append((name, params, train, data["validation"]["n"]))
    if not runs:
        raise PipelineError("no finished run with a trained adapter: queue some, e.g. `dvc exp run --queue "
                            "-S 'lora.r=2,8,32' -C data/raw finetune`, then `dvc queue start`")
    varying = sorted({k for _, p, _, _ in runs for k in p
                      if is_variant_param(k) and len({json.dumps(q.get(k)) for _, q, _, _ in runs}) > 1})
    rows, today = [], todays_params()
    for name, params, train, n in runs:
        accuracy = train["validation"]["accuracy"]
        low, high = proportion_ci(round(accuracy * n), n)
        rows.append({"run": name, "change": change_from_today(params, today), **{k: params.get(k) for k in varying},
                     "data.fold": params.get("data.fold"), "n": n,
                     "accuracy": accuracy, "accuracy_ci_low": low, "accuracy_ci_high": high,
                     "f1": train["validation"]["f1"], "best_epoch": train["best_epoch"],
                     "trainable_params": train["trainable_params"], "minutes": round(train["wall_seconds"] / 60, 2)})
    return sorted(rows, key=lambda row: -row["accuracy"])


def validation_ensembles(exp_show: list[dict], read_predictions=None) -> list[dict]:
    """Seed ensembles screened on validation: runs that differ only in train.seed, each fold's
    validation answers the mean P(similar) of the seeds that ran on every such fold, pooled over the
    folds; beside it each seed alone on the same pairs, and the ensemble against the first seed
    (McNemar on the discordant pairs, summed over the folds). Each is labelled by the params where
    it differs from params.yaml."""
    read_predictions = read_predictions or functools.partial(predictions_at, file=VALIDATION_PREDICTIONS_CSV)
    groups: dict[str, dict[int, dict]] = {}  # configuration: fold: seed: rev (the newest run)
    entries = sorted(finished_entries(exp_show), key=lambda e: (e[1].get("data") or {}).get("timestamp") or "", reverse=True)
    for _, entry, params in entries:
        config = json.dumps({k: v for k, v in params.items() if is_variant_param(k) and k != "train.seed"}, sort_keys=True)
        seeds = groups.setdefault(config, {}).setdefault(params.get("data.fold"), {})
        seeds.setdefault(params.get("train.seed"), []).append(entry["rev"])  # newest first
    ensembles = {}
    for config, by_fold in groups.items():
        folds = sorted(fold for fold, seeds in by_fold.items() if len(seeds) > 1)
        seeds = sorted(set.intersection(*(set(by_fold[fold]) for fold in folds))) if folds else []
        if len(seeds) < 2:
            continue
        try:
            members = [[newest_readable(by_fold[fold][seed], read_predictions) for seed in seeds] for fold in folds]
        except PipelineError as error:  # only runs from before evaluate wrote validation predictions
            print(f"sweep: ensemble of train.seed {seeds} left out: {error}", file=sys.stderr)
            continue
        ensemble = pd.concat([mean_predictions(frames, json.loads(config)["eval.threshold"]) for frames in members])
        alone = [pd.concat([frames[i] for frames in members]) for i in range(len(seeds))]
        right = (ensemble["predicted"] == ensemble["label"]).to_numpy()
        n = len(ensemble)
        low, high = proportion_ci(int(right.sum()), n)
        first = (alone[0]["predicted"] == alone[0]["label"]).to_numpy()
        ensembles[config] = {"seeds": seeds, "folds": folds, "n": n, "accuracy": round(float(right.mean()), 6),
                             "accuracy_ci_low": low, "accuracy_ci_high": high,
                             "each_seed": [round(float((a["predicted"] == a["label"]).mean()), 6) for a in alone],
                             "vs_first_seed": paired_comparison(right, first)}
    today = todays_params()
    return [{"configuration": change_from_today(json.loads(config), today), **row}
            for config, row in sorted(ensembles.items(), key=lambda item: -item[1]["accuracy"])]


def newest_readable(revs: list[str], read_predictions) -> pd.DataFrame:
    """The predictions of the newest of these runs (the same params) that has them."""
    for rev in revs[:-1]:
        try:
            return read_predictions(rev)
        except PipelineError:
            continue
    return read_predictions(revs[-1])


def ensemble_line(row: dict) -> str:
    versus = row["vs_first_seed"]
    seeds = "+".join(map(str, row["seeds"]))
    each = ", ".join(f"{seed} {accuracy:.4f}" for seed, accuracy in zip(row["seeds"], row["each_seed"]))
    return (f"{row['configuration']}, ensemble of train.seed={seeds}: validation accuracy {row['accuracy']:.4f} "
            f"{interval(row['accuracy_ci_low'], row['accuracy_ci_high'])} pooled over folds {row['folds']} ({row['n']} pairs); "
            f"each seed alone: {each}; ensemble − seed {row['seeds'][0]} {100 * versus['accuracy_diff']:+.1f} points "
            f"[{100 * versus['diff_ci_low']:+.1f}, {100 * versus['diff_ci_high']:+.1f}], McNemar p {p_value_text(versus['mcnemar_p'])}")


def pooled_validation(rows: list[dict]) -> list[dict]:
    """validation_rows grouped by their change from params.yaml (the folds of one configuration
    together): pooled validation accuracy [95% CI] over all their validation pairs, best first."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["change"], []).append(row)
    pooled = []
    for label, runs in groups.items():
        correct, n = sum(round(r["accuracy"] * r["n"]) for r in runs), sum(r["n"] for r in runs)
        low, high = proportion_ci(correct, n)
        pooled.append({"configuration": label, "folds": sorted(r["data.fold"] for r in runs), "n": n,
                       "accuracy": round(correct / n, 6), "accuracy_ci_low": low, "accuracy_ci_high": high})
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
    parser = argparse.ArgumentParser(prog="python -m stages.sweep", description=__doc__.splitlines()[0])
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
