"""index: the exported bi-encoder (models/merged) embeds a question bank once, for
`python -m stages.search`. The bank is MQP's questions (retrieval.bank: data/prepared) or a CSV of
your own (retrieval.bank: its path, retrieval.bank_column: its question column); rows without a
question, or repeating an earlier one, are dropped with one line each. DVC rebuilds the index when
the model, the bank or these params change, and only then."""

import sys
import time
from pathlib import Path

from mqp.cli import stage
from mqp.files import atomic_dir, write_json
from mqp.paths import INDEX_DIR, INDEX_META, MERGED_DIR
from mqp.retrieval import (BI_ENCODER_NEEDED, Index, build_hnsw, drop_lines, encode, is_bi_encoder, is_mqp_bank,
                           load_exported, mqp_bank, read_bank_csv, save_index)


def load_bank(retrieval):
    """(the bank's id and question columns, where it came from)."""
    if is_mqp_bank(retrieval.bank):
        return mqp_bank(), "the MQP questions"
    path = Path(retrieval.bank)
    bank, drops = read_bank_csv(path, retrieval.bank_column)
    for line in drop_lines(path, drops):
        print(f"index: {line}", file=sys.stderr)
    return bank, str(path)


@stage("index")
def main(params) -> None:
    retrieval = params.retrieval
    if not is_bi_encoder(MERGED_DIR) and MERGED_DIR.is_dir():
        # A cross-encoder experiment still runs the whole pipeline: its index says why it is empty.
        with atomic_dir(INDEX_DIR) as scratch:
            write_json(scratch / INDEX_META, {"architecture": "cross-encoder", "size": 0})
        print(f"index: skipped, {BI_ENCODER_NEEDED.format(folder=MERGED_DIR)}")
        return
    model, _ = load_exported(MERGED_DIR)
    bank, source = load_bank(retrieval)
    start = time.perf_counter()
    embeddings = encode(model, bank["question"], params.eval.batch_size)
    seconds = time.perf_counter() - start
    index = Index(embeddings, bank["question"].tolist(), bank["id"].tolist())
    hnsw = build_hnsw(embeddings, retrieval.hnsw_m, retrieval.hnsw_ef_construction) if retrieval.search == "hnsw" else None
    meta = {"architecture": "bi-encoder", "bank": retrieval.bank, "search": retrieval.search}
    with atomic_dir(INDEX_DIR) as scratch:
        save_index(index, scratch, meta, hnsw)
    print(f"index: {len(bank)} questions ({source}) embedded by {MERGED_DIR} into {INDEX_DIR}, "
          f"{embeddings.shape[1]} dimensions, {retrieval.search} search; "
          f"{seconds:.1f} s, {len(bank) / seconds:.0f} questions/s")


if __name__ == "__main__":
    main()
