"""prepare: verify the raw CSV's checksum (stage fetch put it there), validate the rows, and write train/validation/test,
and the rows it dropped with their line numbers and reasons."""

from mqp.cli import stage
from mqp.data import checked_raw, drop_counts, format_drops, read_pairs, split_pairs
from mqp.files import atomic_dir, write_json
from mqp.paths import DATA_METRICS, DATA_REPORT, PREPARED_DIR, REJECTED_CSV, SPLITS, split_csv


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
    print(summary_line(summary, params.data))


def summary_line(summary: dict, data) -> str:
    """e.g. `prepare: 3048 valid pairs (kfold split fold 0 of 5): train 2134, validation 304, test 610; dropped: none`."""
    drops = summary["rows_dropped"]
    valid = summary["rows_read"] - sum(drops.values())
    sizes = ", ".join(f"{name} {summary[name]['n']}" for name in SPLITS)
    fold = f" fold {data.fold} of {data.folds}" if data.split == "kfold" else ""
    dropped = f"{sum(drops.values())} rows ({format_drops(drops)}), listed in {REJECTED_CSV}" if sum(drops.values()) else "none"
    return f"prepare: {valid} valid pairs ({data.split} split{fold}): {sizes}; dropped: {dropped}"


if __name__ == "__main__":
    main()
