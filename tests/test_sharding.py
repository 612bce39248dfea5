"""finetune under torchrun: the bi-encoder's batches of whole question_1 groups are sharded across
processes so that each process takes the same number of steps, every pair is seen once per epoch,
and both pairs of a question_1 sit in one batch on one process."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard

from helpers import REPO
from mqp.errors import PipelineError
from mqp.training import QuestionGroupedBatches, QuestionGroupedSampler


def mqp_like(n_questions: int = 150):
    """Two pairs per question_1, as in MQP, and a few questions left with one (rows dropped)."""
    groups = [q for q in range(n_questions) for _ in range(1 if q % 17 == 0 else 2)]
    lengths = [10 + (7 * g) % 41 for g in groups]
    return groups, lengths


def check_epoch(per_process: list[list[list[int]]], groups: list[int], batch_size: int) -> None:
    """Each process's batches of one epoch: the same number each, every pair once, groups whole."""
    assert len({len(batches) for batches in per_process}) == 1
    seen = [index for batches in per_process for batch in batches for index in batch]
    assert sorted(seen) == list(range(len(groups)))
    home = {}
    for process, batches in enumerate(per_process):
        for number, batch in enumerate(batches):
            assert 0 < len(batch) <= batch_size + 1
            for index in batch:
                assert home.setdefault(groups[index], (process, number)) == (process, number)


@pytest.mark.parametrize("processes, batch_size", [(2, 16), (3, 16), (2, 7), (4, 8)])
def test_accelerate_shards_whole_groups_and_every_pair_once(processes, batch_size):
    groups, lengths = mqp_like()
    sampler = QuestionGroupedSampler(groups, lengths, batch_size, torch.Generator().manual_seed(3))
    batches = QuestionGroupedBatches(sampler, batch_size, processes)
    assert len(batches) % processes == 0
    # What each process of a torchrun launch iterates (the Trainer's accelerate.prepare; even_batches
    # would repeat batches from the start if the count were not a multiple of the processes).
    per_process = []
    for rank in range(processes):
        sampler.generator = torch.Generator().manual_seed(3)  # every process draws the same order
        per_process.append(list(BatchSamplerShard(batches, num_processes=processes, process_index=rank)))
    check_epoch(per_process, groups, batch_size)


def test_one_process_keeps_the_dataloaders_batches():
    groups, lengths = mqp_like()
    order = list(QuestionGroupedSampler(groups, lengths, 16, torch.Generator().manual_seed(5)))
    batches = QuestionGroupedSampler(groups, lengths, 16, torch.Generator().manual_seed(5)).batches(16, 1)
    assert batches == [order[i : i + 16] for i in range(0, len(order), 16)]  # what finetune trained on so far


def test_too_few_groups_for_the_processes_is_one_clear_error():
    sampler = QuestionGroupedSampler([0, 0, 1, 1], [5, 5, 6, 6], 1)
    with pytest.raises(PipelineError, match="too few to split"):
        sampler.batches(1, 4)


# Two CPU processes (gloo) prepare the same DataLoader as PairTrainer and gather what each iterated.
SCRIPT = textwrap.dedent("""
    import json, sys
    import torch, torch.distributed as dist
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from mqp.training import QuestionGroupedBatches, QuestionGroupedSampler

    groups = [q for q in range(120) for _ in range(1 if q % 17 == 0 else 2)]
    lengths = [10 + (7 * g) % 41 for g in groups]
    accelerator = Accelerator(cpu=True)
    sampler = QuestionGroupedSampler(groups, lengths, 16, torch.Generator().manual_seed(7))
    loader = accelerator.prepare(DataLoader(list(range(len(groups))), collate_fn=list,
                                            batch_sampler=QuestionGroupedBatches(sampler, 16, accelerator.num_processes)))
    epochs = [[batch for batch in loader] for _ in range(2)]
    gathered = [None] * accelerator.num_processes
    dist.all_gather_object(gathered, epochs)
    if accelerator.is_main_process:
        print("EPOCHS", json.dumps({"groups": groups, "per_process": gathered}))
""")


def test_two_cpu_processes_each_take_whole_groups_once_per_epoch(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(script)], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    found = json.loads(result.stdout.split("EPOCHS", 1)[1])
    per_process = found["per_process"]
    assert len(per_process) == 2
    for epoch in range(2):
        check_epoch([process[epoch] for process in per_process], found["groups"], 16)
    assert per_process[0][0] != per_process[0][1]  # a new order each epoch
