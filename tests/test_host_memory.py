"""runtime/host_memory: with freed memory kept for reuse, a tensor op that allocates a fresh 16 MiB output every
call stops page-faulting it in again. Measured in a subprocess, since the setting lasts for the process."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc-only")

_PROBE = """
import json, resource, sys
import torch
from cifarzoo.runtime.host_memory import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None
x = torch.randn(128, 128, 32, 32).to(torch.bfloat16)  # 16 MiB, what a resnet50 stage-1 activation is at batch 128
for _ in range(10):  # the heap grows to its working size first: that is the one-time cost
    torch.relu(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.relu(x)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"applied": applied, "faults_per_call": faults, "pages": x.numel() * 2 // 4096}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_reused_memory_is_not_faulted_in_again() -> None:
    tuned, default = _probe("reuse"), _probe("default")
    assert tuned["applied"] is True
    # Under glibc's defaults every call faults in (about) every page of its output; kept for reuse, none.
    assert default["faults_per_call"] >= 0.5 * default["pages"], default  # the probe sees the problem at all
    assert tuned["faults_per_call"] < 0.01 * tuned["pages"], (tuned, default)


def test_it_is_on_for_training_by_default_and_can_be_turned_off() -> None:
    from cifarzoo.training.recipe import load_recipe

    assert load_recipe("resnet26-fm").train.reuse_host_memory is True
    assert load_recipe("resnet26-fm", overrides=["train.reuse_host_memory=false"]).train.reuse_host_memory is False
