"""prepare: verify the raw CSV's checksum (stage fetch put it there), validate the rows, and write train/validation/test,
and the rows it dropped with their line numbers and reasons."""

from mqp.cli import stage
from mqp.data import checked_raw, drop_counts, format_drops, read_pairs, split_pairs
from mqp.files import atomic_dir, write_json
from mqp.paths import DATA_METRICS, DATA_REPORT, PREPARED_DIR, REJECTED_CSV, split_csv


def split_summary(splits: dict, table, drops: dict) -> dict:
    summary = {
        name: {"n": len(part), "similar": int(part["label"].sum()), "similar_share": round(float(part["label"].mean()), 4)}
        for name, part in splits.items()
    }
    summary["rows_read"] = len(table) + sum(drops.values())
    summary["rows_dropped"] = drops
    return summary


def headline(summary: dict) -> dict:
    """The valid pairs and the rows dropped, for `dvc metrics show` (n and acc line up with the
    models' files there)."""
    dropped = sum(summary["rows_dropped"].values())
    return {"n": summary["rows_read"] - dropped, "n_dropped": dropped}


@stage("prepare")
def main(params) -> None:
    table, rejected = read_pairs(checked_raw(params.data))
    splits = split_pairs(table, params.data)
    with atomic_dir(PREPARED_DIR) as scratch:
        for name, part in splits.items():
            part.to_csv(scratch / split_csv(name).name, index=False)
        rejected.to_csv(scratch / REJECTED_CSV.name, index=False)
    summary = split_summary(splits, table, drop_counts(rejected))
    write_json(DATA_REPORT, summary)
    write_json(DATA_METRICS, headline(summary))
    sizes = ", ".join(f"{name} {len(part)}" for name, part in splits.items())
    fold = f" fold {params.data.fold} of {params.data.folds}" if params.data.split == "kfold" else ""
    dropped = f"{len(rejected)} rows ({format_drops(summary['rows_dropped'])}), listed in {REJECTED_CSV}" if len(rejected) else "none"
    print(f"prepare: {len(table)} valid pairs ({params.data.split} split{fold}): {sizes}; dropped: {dropped}")


if __name__ == "__main__":
    main()
