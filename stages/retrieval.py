"""retrieval: the models as search engines on the test fold, and the verdict search says.

Every test question_1 is a query and every other test question the bank. Ranking: where each method
puts the query's similar rewrite (and its dissimilar one, a hard negative) gives recall@1, recall@5,
MRR, nDCG@10 and how often the similar rewrite comes first, with 95% intervals. Open set
(mqp.openset): each query searched with and without its similar rewrite in the bank; the verdict,
"already answered" or "no match", is right or wrong, and its threshold (and fusion's weight) come
from the validation split, searched the same way. Methods: the zero-shot embeddings, the LoRA
bi-encoder, WiSE (LoRA's update scaled by retrieval.adapter_scale), fusion of the zero-shot and LoRA
cosines, and BM25. The method search uses (retrieval.method) is the headline, and its choices go to
the index stage in results/retrieval/verdict.json.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mqp.architectures import architecture_for
from mqp.cli import stage
from mqp.encoding import embed
from mqp.files import atomic_dir, write_json
from mqp.lora import load_trained
from mqp.metrics import paired_text
from mqp.models import device, load_encoder, load_tokenizer
from mqp.openset import (TopHits, calibration, choose_threshold, openset_metrics, openset_sums, outcomes,
                         perfect_ranking, precision_recall, top_hit_auroc, top_hits)
from mqp.paths import (ADAPTER_DIR, RANKS_FILE, RETRIEVAL_METRICS, RETRIEVAL_REPORT, RETRIEVAL_RESULTS,
                       VERDICT_CURVE_CSV, VERDICT_JSON)
from mqp.ranking import RankingTask, bm25_scorer, ranking_task
from mqp.splits import load_split
from mqp.stats import paired_comparison
from mqp.ranking_metrics import retrieval_detail

NAMES = {"zeroshot": "zero-shot", "lora": "LoRA", "wise": "WiSE", "fusion": "fusion", "bm25": "BM25"}
# Each method is compared, verdict by verdict, with these two: the model LoRA starts from, and LoRA.
OPENSET_REFERENCES = ("zeroshot", "lora")


@dataclass(frozen=True)
class Split:
    """A split's ranking task and each encoder's unit embeddings of its bank."""

    task: RankingTask
    vectors: dict[str, np.ndarray]

    def cosine_rows(self, encoder: str):
        """score_rows (mqp.openset.top_hits) of one encoder's cosines."""
        vectors, queries = self.vectors[encoder], self.task.queries
        return lambda start, stop: vectors[queries[start:stop]] @ vectors.T

    def fusion_rows(self, weight: float):
        """Cosine of zero-shot + weight x cosine of LoRA."""
        zeroshot, lora = self.cosine_rows("zeroshot"), self.cosine_rows("lora")
        return lambda start, stop: zeroshot(start, stop) + weight * lora(start, stop)


def embedded_splits(params) -> dict[str, Split]:
    """The validation and test tasks, their banks embedded by every encoder: zero-shot, and for a
    bi-encoder LoRA and WiSE (a cross-encoder embeds no question alone)."""
    tasks = {name: ranking_task(load_split(name)) for name in ("validation", "test")}
    tokenizer = load_tokenizer(params.model)
    vectors = {name: {} for name in tasks}

    def embed_all(encoder, name):
        for split, task in tasks.items():
            vectors[split][name] = embed(encoder, tokenizer, task.bank, params.model.max_length,
                                         params.eval.batch_size, params.model.pooling)

    embed_all(load_encoder(params.model).to(device()).eval(), "zeroshot")
    architecture = architecture_for(params)
    if architecture.EMBEDS_QUESTIONS:
        trained = architecture.lora_module(load_trained(params, tokenizer, ADAPTER_DIR))  # its encoder
        embed_all(trained, "lora")
        if hasattr(trained, "peft_config"):  # WiSE scales a LoRA update; a fully fine-tuned model has none
            from peft.helpers import rescale_adapter_scale

            with rescale_adapter_scale(trained, params.retrieval.adapter_scale):
                embed_all(trained, "wise")
    return {split: Split(task, vectors[split]) for split, task in tasks.items()}


def bm25_rows(task: RankingTask):
    """BM25's score_rows: a block of queries scored at a time, never the whole queries x bank."""
    scores, queries = bm25_scorer(task.bank), [task.bank[i] for i in task.queries]
    return lambda start, stop: scores(queries[start:stop])


def scorers(split: Split, fusion_weight: float | None) -> dict:
    """score_rows of every method this split has embeddings for; fusion at the given weight."""
    rows = {name: split.cosine_rows(name) for name in split.vectors}
    if fusion_weight is not None:
        rows["fusion"] = split.fusion_rows(fusion_weight)
    rows["bm25"] = bm25_rows(split.task)
    return rows


def hits_of(split: Split, score_rows):
    task = split.task
    return top_hits(score_rows, task.queries, task.relevant, task.negative, len(task.bank))


def best_fusion_weight(validation: Split, weights: list[float], cost: float) -> float:
    """The fusion weight whose verdicts cost least on validation (each at its own best threshold);
    ties go to the first listed."""
    def validation_cost(weight):
        hits = hits_of(validation, validation.fusion_rows(weight))
        threshold = choose_threshold(hits, validation.task.relevant, cost)
        sums = openset_sums(hits, validation.task.relevant, threshold)
        # wrong verdicts, a false match weighted by its cost
        return (sums["verdicts"] - sums["right"]) + (cost - 1) * (sums["answered"] - sums["answered_right"])

    return min(weights, key=validation_cost)


def evaluate_methods(splits: dict[str, Split], params) -> tuple[dict, dict, dict, dict]:
    """Each method's test ranks, its open-set report (threshold chosen on validation), its
    per-verdict outcomes and its verdict's precision-recall curve on the test split."""
    cost = params.retrieval.false_match_cost
    validation, test = splits["validation"], splits["test"]
    weight = (best_fusion_weight(validation, params.retrieval.fusion_weights, cost)
              if "lora" in test.vectors else None)
    validation_rows, test_rows = scorers(validation, weight), scorers(test, weight)
    ranks, reports, right, curves = {}, {}, {}, {}
    for method, rows in test_rows.items():
        ranks[method] = test.task.ranks_by(rows)
        chosen = hits_of(validation, validation_rows[method])
        threshold = choose_threshold(chosen, validation.task.relevant, cost)
        hits = hits_of(test, rows)
        sums = openset_sums(hits, test.task.relevant, threshold)
        reports[method] = {**openset_metrics(sums), "top_hit_auroc": top_hit_auroc(hits, test.task.relevant),
                           "threshold": round(threshold, 6), "calibration": calibration(chosen, validation.task.relevant),
                           "validation_verdict_accuracy": openset_metrics(openset_sums(chosen, validation.task.relevant,
                                                                                       threshold))["verdict_accuracy"],
                           **({"fusion_weight": weight} if method == "fusion" else {}), "sums": sums}
        reports[method].update(perfect_ranking_report(chosen, hits, validation.task, test.task, cost))
        right[method] = outcomes(hits, test.task.relevant, threshold)
        curves[method] = precision_recall(hits, test.task.relevant)
    return ranks, reports, right, curves


def perfect_ranking_report(chosen: TopHits, hits: TopHits, validation: RankingTask, test: RankingTask,
                           cost: float) -> dict:
    """The method's verdicts on the test split had it ranked perfectly (mqp.openset), the threshold
    chosen on validation's the same way: the most its score can give."""
    perfect = chosen.perfect(validation.relevant, validation.negative)
    threshold = choose_threshold(perfect, validation.relevant, cost)
    return perfect_ranking(openset_sums(hits.perfect(test.relevant, test.negative), test.relevant, threshold))


def openset_detail(reports: dict, right: dict, params) -> dict:
    """The open-set section of the report: every method, and each against zero-shot and LoRA."""
    comparisons = {f"{method}-{reference}": paired_comparison(right[method], right[reference])
                   for method in right for reference in OPENSET_REFERENCES
                   if reference in right and method != reference}
    return {"method": search_method(params, reports), "false_match_cost": params.retrieval.false_match_cost,
            "methods": reports, "comparisons": comparisons}


def search_method(params, reports: dict) -> str:
    """retrieval.method, or zero-shot where there is no LoRA embedding (a cross-encoder)."""
    return params.retrieval.method if params.retrieval.method in reports else "zeroshot"


def verdict_config(openset: dict) -> dict:
    """What index and search need to say the verdict: the method, fusion's weight, the threshold
    on the top hit's score and the calibration that turns a score into P(already answered)."""
    chosen = openset["methods"][openset["method"]]
    return {"method": openset["method"], "fusion_weight": chosen.get("fusion_weight"), "threshold": chosen["threshold"],
            "calibration": chosen["calibration"], "false_match_cost": openset["false_match_cost"]}


def lean_metrics(detail: dict) -> dict:
    """What `dvc metrics show` prints, in the columns of the models' files: the verdict accuracy of
    search's method as acc with its 95% interval, the top hit's AUROC as auc, and the method against
    zero-shot in points with McNemar's p, as text."""
    openset = detail["openset"]
    method = openset["method"]
    chosen = openset["methods"][method]
    lean = {"n": chosen["verdicts"], "acc": round(chosen["verdict_accuracy"], 4),
            "acc_ci": f"{chosen['verdict_accuracy_ci_low']:.3f}-{chosen['verdict_accuracy_ci_high']:.3f}"}
    if chosen["top_hit_auroc"] is not None:
        lean["auc"] = round(chosen["top_hit_auroc"], 4)
    if method != "zeroshot":
        lean["vs_zeroshot"] = paired_text(openset["comparisons"][f"{method}-zeroshot"])
    return lean


def ranks_table(task: RankingTask, ranks: dict, right: dict) -> pd.DataFrame:
    """One row per query: its similar and dissimilar rewrites, where each method ranked them, and
    whether each method's two verdicts were right (with the rewrite in the bank; without it)."""
    table = pd.DataFrame({"query": [task.bank[i] for i in task.queries],
                          "similar": [task.bank[i] for i in task.relevant],
                          "dissimilar": [task.bank[i] for i in task.negative]})
    n = len(task.queries)
    for method, (relevant, negative) in ranks.items():
        table[f"{method}_rank_similar"], table[f"{method}_rank_dissimilar"] = relevant, negative
        table[f"{method}_verdict_found"] = right[method][:n].astype(int)
        table[f"{method}_verdict_no_match"] = right[method][n:].astype(int)
    return table


def summary(detail: dict) -> str:
    """The stage's line: search's method's verdict accuracy [CI], the others', every recall@1, and
    search's method against zero-shot and LoRA (methods in NAMES order, as the report is sorted)."""
    openset, methods = detail["openset"], detail["methods"]
    chosen = openset["methods"][openset["method"]]
    weight = f", w {chosen['fusion_weight']:g}" if "fusion_weight" in chosen else ""
    others = [m for m in NAMES if m in openset["methods"] and m != openset["method"]]
    line = (f"retrieval: {chosen['n']} test queries, bank of {detail['bank']}; verdict accuracy "
            f"{NAMES[openset['method']]}{weight} {chosen['verdict_accuracy']:.4f} "
            f"[{chosen['verdict_accuracy_ci_low']:.4f}, {chosen['verdict_accuracy_ci_high']:.4f}], "
            + ", ".join(f"{NAMES[m]} {openset['methods'][m]['verdict_accuracy']:.4f}" for m in others)
            + "; recall@1 " + ", ".join(f"{NAMES[m]} {methods[m]['recall_at_1']:.4f}" for m in NAMES if m in methods))
    for reference in OPENSET_REFERENCES:
        key = f"{openset['method']}-{reference}"
        if key in openset["comparisons"]:
            comparison = openset["comparisons"][key]
            line += (f"; {NAMES[openset['method']]} - {NAMES[reference]} verdicts "
                     f"{100 * comparison['accuracy_diff']:+.1f} points (p {comparison['mcnemar_p']:.2g})")
    return line


@stage("retrieval")
def main(params) -> None:
    splits = embedded_splits(params)
    ranks, reports, right, curves = evaluate_methods(splits, params)
    test = splits["test"].task
    detail = retrieval_detail(ranks, reference="lora" if "lora" in ranks else None, bank=len(test.bank))
    detail["queries_skipped"] = test.skipped
    detail["openset"] = openset_detail(reports, right, params)
    with atomic_dir(RETRIEVAL_RESULTS) as scratch:
        ranks_table(test, ranks, right).to_csv(scratch / RANKS_FILE, index=False)
        write_json(scratch / VERDICT_JSON.name, verdict_config(detail["openset"]))
        curves[detail["openset"]["method"]].to_csv(scratch / VERDICT_CURVE_CSV.name, index=False)
    write_json(RETRIEVAL_REPORT, detail)
    write_json(RETRIEVAL_METRICS, lean_metrics(detail))
    print(summary(detail))


if __name__ == "__main__":
    main()
