"""The Noam schedule of spec section 8 over the real number of steps."""

import pytest
import torch

from bbmn.train.schedule import NoamSchedule, noam_lr


def test_formula_endpoints():
    W, T = 100, 1000
    assert noam_lr(0, W, T, 2e-4, 4e-4, 1e-4) == pytest.approx(2e-4)
    assert noam_lr(50, W, T, 2e-4, 4e-4, 1e-4) == pytest.approx(3e-4)
    assert noam_lr(W, W, T, 2e-4, 4e-4, 1e-4) == pytest.approx(4e-4)
    assert noam_lr(T, W, T, 2e-4, 4e-4, 1e-4) == pytest.approx(1e-4)
    assert noam_lr((W + T) // 2, W, T, 2e-4, 4e-4, 1e-4) == pytest.approx(4e-4 * 0.25 ** 0.5)
    assert noam_lr(5 * T, W, T, 2e-4, 4e-4, 1e-4) == pytest.approx(1e-4)  # stays at the end value


def test_scheduler_steps_every_batch_and_resumes():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1.0)
    sched = NoamSchedule(opt, warmup_steps=10, total_steps=40, init_lr=1e-4, max_lr=1e-3, final_lr=1e-4)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(1e-4) and seen[10] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(seen[:10], seen[1:11]))
    assert all(a > b for a, b in zip(seen[10:19], seen[11:20]))
    # a new scheduler loaded from the state continues where this one stopped
    opt2 = torch.optim.Adam([param], lr=1.0)
    sched2 = NoamSchedule(opt2, 10, 40, 1e-4, 1e-3, 1e-4)
    sched2.load_state_dict(sched.state_dict())
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
