"""The training loop's shared parts: a checkpoint in the layout the trainers have always written
resumes bit for bit, the run files start over from what a checkpoint covers, the time budget spans
restarts and the throughput leaves out the time between steps."""

import json
import time

import torch

from bbmn.train.checkpoint import optimizer_state, rng_state, save_checkpoint
from bbmn.train.config import FinetuneConfig
from bbmn.train.loop import Clock, RunFiles, Throughput, Training, adam, noam_schedule


def _training(seed: int = 0) -> Training:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    cfg = FinetuneConfig(init_lr=1e-4, max_lr=1e-3, final_lr=1e-4)
    optimizer = adam(model.parameters(), cfg)
    return Training(model, optimizer, noam_schedule(optimizer, cfg, warmup_steps=3, total_steps=10))


def _steps(training: Training, n: int) -> list[float]:
    """``n`` steps on fixed inputs (dropout draws from the torch RNG); the rates they used."""
    rates = []
    for i in range(n):
        rates.append(training.lr)
        x = torch.linspace(-1, 1, 20).reshape(5, 4) * (i + 1)
        training.step(training.model(x).pow(2).mean())
    return rates


def test_a_checkpoint_in_the_trainers_layout_resumes_bit_for_bit(tmp_path):
    reference = _training()
    _steps(reference, 4)
    path = tmp_path / "latest.pt"
    # written as pretrain.py and finetune.py wrote it before the shared loop (keys, RNG per rank)
    save_checkpoint(path, model=reference.model.state_dict(),
                    optimizer=optimizer_state(reference.optimizer, reference.model),
                    schedule=reference.schedule.state_dict(), rng=[rng_state()], epoch=0,
                    step_in_epoch=4, step=4, history=[], fingerprint="f", model_config={})
    rates = _steps(reference, 6)

    resumed = _training(seed=1)  # other initial weights: all of them must come from the file
    state = resumed.resume(path, "f")
    assert state["step"] == 4
    assert _steps(resumed, 6) == rates
    for name, weight in reference.model.state_dict().items():
        assert torch.equal(weight, resumed.model.state_dict()[name]), name


def test_a_saved_training_resumes_and_another_configuration_is_set_aside(tmp_path):
    reference = _training()
    _steps(reference, 2)
    reference.save(tmp_path / "latest.pt", "f", progress={"epoch": 1})
    rates = _steps(reference, 3)
    resumed = _training(seed=1)
    assert resumed.resume(tmp_path / "latest.pt", "f")["progress"] == {"epoch": 1}
    assert _steps(resumed, 3) == rates
    assert _training().resume(tmp_path / "latest.pt", "other") is None
    assert not (tmp_path / "latest.pt").exists() and list(tmp_path.glob("latest.*.stale.pt"))


def test_run_files_start_over_from_what_the_checkpoint_covers(tmp_path):
    files = RunFiles(tmp_path / "run")
    files.start({"seed": 1}, [{"epoch": 1}], step=0)
    for step in (2, 4, 6):
        files.add_step({"step": step})
    files.add_record({"epoch": 2})
    with open(tmp_path / "run" / "steps.jsonl", "a") as fh:
        fh.write('{"step": 8, "tr')  # cut short by a kill
    files.start({"seed": 1}, [{"epoch": 1}], step=4)  # resumed at step 4, after epoch 1
    lines = (tmp_path / "run" / "steps.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4]
    assert (tmp_path / "run" / "history.jsonl").read_text() == '{"epoch": 1}\n'
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"seed": 1}
    (tmp_path / "run" / "metrics.json").write_text("{}")
    files.remove(["metrics.json", "model.pt"])
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_the_time_budget_spans_restarts_and_the_throughput_counts_steps_only():
    assert not Clock(0.0, earlier_seconds=1e9).out_of_time()  # 0: no budget
    assert Clock(1.0, earlier_seconds=60.0).out_of_time()
    assert not Clock(1.0, earlier_seconds=30.0).out_of_time()
    meter = Throughput(seconds=1.0, molecules=10)
    meter.restart()
    meter.count(5)
    time.sleep(0.3)  # validation, say
    meter.restart()
    meter.count(5)
    assert meter.molecules == 20 and 1.0 < meter.seconds < 1.25
