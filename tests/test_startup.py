"""Each stage imports only what it uses (issue 19): baseline and zeroshot never load PEFT, and
finetune loads W&B only when logging.wandb asks for it. Run in a fresh Python, where nothing the
suite imported is loaded yet."""

import subprocess
import sys

from helpers import REPO, make_workdir

# Runs the stages' main() in one Python: baseline and zeroshot with `import peft` made to fail,
# then finetune; prints the modules that were loaded.
SCRIPT = """
import sys
sys.modules["peft"] = None  # any import of peft now raises ImportError
from stages import baseline, prepare, zeroshot
prepare.main(); baseline.main(); zeroshot.main()
assert "transformers.trainer_utils" not in sys.modules, "the Trainer's utilities were imported"
del sys.modules["peft"]
from stages import finetune
finetune.main()
print("LOADED", " ".join(sorted(name for name in sys.modules if name.split(".")[0] in ("peft", "wandb"))))
"""


def test_stages_import_only_what_they_use(tiny_bert, tmp_path):
    project = make_workdir(tmp_path / "project", tiny_bert, overrides={"train.epochs": 1})
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=project, capture_output=True, text=True, timeout=600,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                 "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    loaded = result.stdout.split("LOADED", 1)[1].split()
    assert "peft" in loaded  # finetune uses it: the check sees imports
    assert not [name for name in loaded if name.split(".")[0] == "wandb"]  # logging.wandb is disabled
