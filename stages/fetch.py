"""fetch: put MQP at data/raw/mqp.csv, downloaded, unless a file is there already (your own, or
MQP placed by hand offline), which is kept as it is. The file is this stage's output, so DVC hashes
it: an edited file re-runs prepare, which checks it against data.sha256."""

from mqp.cli import stage
from mqp.data import MQP_URL, fetch_raw
from mqp.paths import RAW_CSV

DOWNLOADED = f"fetch: MQP downloaded from {MQP_URL} to {RAW_CSV}"
KEPT = f"fetch: {RAW_CSV} is there (placed by hand); kept as it is, not downloaded"


@stage("fetch")
def main(params) -> None:
    print(DOWNLOADED if fetch_raw() else KEPT)


if __name__ == "__main__":
    main()
