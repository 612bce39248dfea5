"""retrieval: the models as search engines on the test fold. Every test question_1 is a query and
every other test question the bank; each method ranks the bank, and the rank of the query's similar
rewrite (and of its dissimilar one, a hard negative) gives recall@1, recall@5, MRR, nDCG@10 and how
often the similar rewrite comes first, with 95% intervals. Zero-shot embeddings, the LoRA
bi-encoder and BM25 side by side, LoRA tested against each on the same queries."""

import numpy as np
import pandas as pd

from mqp.cli import stage
from mqp.files import atomic_dir, write_json
from mqp.inference import embed
from mqp.lora import load_trained
from mqp.metrics import paired_text
from mqp.models import device, load_encoder, load_tokenizer
from mqp.paths import ADAPTER_DIR, RANKS_FILE, RETRIEVAL_REPORT, RETRIEVAL_METRICS, RETRIEVAL_RESULTS
from mqp.retrieval import RankingTask, bm25_scores, ranking_task
from mqp.splits import load_split
from mqp.stats import retrieval_detail

NAMES = {"zeroshot": "zero-shot", "lora": "LoRA", "bm25": "BM25"}


def embedding_ranks(encoder, tokenizer, task: RankingTask, params) -> tuple[np.ndarray, np.ndarray]:
    """Ranks by the cosine of sentence embeddings: the bank embedded once, queries are rows of it."""
    vectors = embed(encoder, tokenizer, task.bank, params.model.max_length, params.eval.batch_size, params.model.pooling)
    return task.ranks(vectors[task.queries] @ vectors.T)


def method_ranks(task: RankingTask, params) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each method's ranks; LoRA only for a bi-encoder (a cross-encoder embeds no question alone)."""
    tokenizer = load_tokenizer(params.model)
    ranks = {"zeroshot": embedding_ranks(load_encoder(params.model).to(device()).eval(), tokenizer, task, params)}
    if params.model.architecture == "bi-encoder":
        ranks["lora"] = embedding_ranks(load_trained(params, tokenizer, ADAPTER_DIR).encoder, tokenizer, task, params)
    ranks["bm25"] = task.ranks(bm25_scores(task.bank, [task.bank[i] for i in task.queries]))
    return ranks


def lean_metrics(detail: dict) -> dict:
    """What `dvc metrics show` prints, in the columns of the models' files: LoRA's recall@1 (how
    often the top-ranked bank question is the query's similar rewrite: the search's accuracy) as
    acc with its 95% interval, and LoRA - zero-shot in points with McNemar's p, as text."""
    if "lora" not in detail["methods"]:
        return {"vs_zeroshot": "no LoRA (cross-encoder)"}
    lora = detail["methods"]["lora"]
    return {"n": lora["n"], "acc": round(lora["recall_at_1"], 4),
            "acc_ci": f"{lora['recall_at_1_ci_low']:.3f}-{lora['recall_at_1_ci_high']:.3f}",
            "vs_zeroshot": paired_text(detail["comparisons"]["zeroshot"]["recall_at_1"])}


def ranks_table(task: RankingTask, ranks: dict) -> pd.DataFrame:
    """One row per query: its similar and dissimilar rewrites, and where each method ranked them."""
    table = pd.DataFrame({"query": [task.bank[i] for i in task.queries],
                          "similar": [task.bank[i] for i in task.relevant],
                          "dissimilar": [task.bank[i] for i in task.negative]})
    for method, (relevant, negative) in ranks.items():
        table[f"{method}_rank_similar"], table[f"{method}_rank_dissimilar"] = relevant, negative
    return table


def summary(detail: dict) -> str:
    methods = detail["methods"]
    first = next(iter(methods.values()))
    line = (f"retrieval: {first['n']} test queries, bank of {detail['bank']}; MRR "
            + ", ".join(f"{NAMES[m]} {v['mrr']:.4f}" for m, v in methods.items())
            + "; recall@1 " + ", ".join(f"{NAMES[m]} {v['recall_at_1']:.4f}" for m, v in methods.items()))
    for method, comparison in detail["comparisons"].items():
        line += f"; LoRA - {NAMES[method]} MRR {100 * comparison['mrr']['diff']:+.1f} points (p {comparison['mrr']['t_test_p']:.2g})"
    return line


@stage("retrieval")
def main(params) -> None:
    task = ranking_task(load_split("test"))
    ranks = method_ranks(task, params)
    detail = retrieval_detail(ranks, reference="lora" if "lora" in ranks else None, bank=len(task.bank))
    detail["queries_skipped"] = task.skipped
    with atomic_dir(RETRIEVAL_RESULTS) as scratch:
        ranks_table(task, ranks).to_csv(scratch / RANKS_FILE, index=False)
    write_json(RETRIEVAL_REPORT, detail)
    write_json(RETRIEVAL_METRICS, lean_metrics(detail))
    print(summary(detail))


if __name__ == "__main__":
    main()
