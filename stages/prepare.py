"""prepare: fetch MQP, verify its checksum, validate the rows, and write train/validation/test."""

from mqp.cli import stage
from mqp.data import fetch_raw, format_drops, read_pairs, split_pairs
from mqp.files import atomic_dir, write_json
from mqp.paths import DATA_METRICS, PREPARED_DIR, split_csv


def split_summary(splits: dict, table, drops: dict) -> dict:
    summary = {
        name: {"n": len(part), "similar": int(part["label"].sum()), "similar_share": round(float(part["label"].mean()), 4)}
        for name, part in splits.items()
    }
    summary["rows_read"] = len(table) + sum(drops.values())
    summary["rows_dropped"] = drops
    return summary


@stage("prepare")
def main(params) -> None:
    table, drops = read_pairs(fetch_raw(params.data))
    splits = split_pairs(table, params.data)
    with atomic_dir(PREPARED_DIR) as scratch:
        for name, part in splits.items():
            part.to_csv(scratch / split_csv(name).name, index=False)
    write_json(DATA_METRICS, split_summary(splits, table, drops))
    sizes = ", ".join(f"{name} {len(part)}" for name, part in splits.items())
    fold = f" fold {params.data.fold} of {params.data.folds}" if params.data.split == "kfold" else ""
    print(f"prepare: {len(table)} valid pairs ({params.data.split} split{fold}): {sizes}; dropped: {format_drops(drops)}")


if __name__ == "__main__":
    main()
