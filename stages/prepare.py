"""prepare: fetch MQP, verify its checksum, validate the rows, and write train/validation/test."""

from stages.data import fetch_raw, format_drops, read_pairs, split_pairs
from stages.errors import cli
from stages.io import atomic_dir, write_json
from stages.params import load_params
from stages.paths import DATA_METRICS, PREPARED_DIR


@cli("prepare")
def main() -> None:
    params = load_params().data
    raw = fetch_raw(params)
    table, drops = read_pairs(raw)
    splits = split_pairs(table, params)

    with atomic_dir(PREPARED_DIR) as scratch:
        for name, part in splits.items():
            part.to_csv(scratch / f"{name}.csv", index=False)

    summary = {
        name: {"n": len(part), "similar": int(part["label"].sum()), "similar_share": round(float(part["label"].mean()), 4)}
        for name, part in splits.items()
    }
    summary["rows_read"] = len(table) + sum(drops.values())
    summary["rows_dropped"] = drops
    write_json(DATA_METRICS, summary)
    sizes = ", ".join(f"{name} {len(part)}" for name, part in splits.items())
    print(f"prepare: {len(table)} valid pairs ({params.split} split): {sizes}; dropped: {format_drops(drops)}")


if __name__ == "__main__":
    main()
