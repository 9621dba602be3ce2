"""The scenario format's contract (DESIGN.md section 3): what loads, and how bad input is refused.

Bad input never raises anything but ScenarioError, whose every line reads
`error: FILE: field.path: message`, the message saying what is expected and what was got. The
table below is the catalogue of refusals; the Hypothesis tests check the same properties on random
valid scenarios and random corruptions of them, and that `--set a.b=v` equals editing the file.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pssim.catalog import load_catalog
from pssim.profile import Profile
from pssim.scenario import (
    Problem,
    Scenario,
    ScenarioError,
    json_schema,
    load_scenario,
    parse_overrides,
    resolved_yaml,
    scenario_from_dict,
)
from pssim.scenario.schema import ClusterSpec
from pssim.scenario.yaml_io import MAX_SCENARIO_BYTES
from pssim.sharding import plan_shards

LINE = re.compile(r"^error: .+: .*$")

BASE = """\
name: t
model: {kind: mlp, input_dim: 32, hidden: [16, 16], output_dim: 4}
training: {batch_size: 8, steps: 10, warmup_steps: 2}
cluster:
  workers: {count: 4}
  servers: {count: 1}
sharding: {partition_bytes: 1024}
"""


def _problems(text: str, overrides: list[str] | None = None) -> list[Problem]:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(yaml.safe_load(text), "x.yaml", overrides)
    err = info.value
    assert err.problems, "a ScenarioError always names at least one problem"
    for line in err.lines():
        assert LINE.match(line), line
        assert line.startswith("error: x.yaml: ")
    assert str(err) == "\n".join(err.lines())
    return err.problems


def _has(problems: list[Problem], path: str, fragment: str) -> bool:
    return any(p.path == path and fragment in p.message for p in problems)


# ------------------------------------------------------------------------------ the bad-input table
# (YAML added to BASE (later keys replace BASE's sections), expected path, message fragment)
BAD_FILE = [
    # unknown keys, at every nesting level
    ("colour: red", "colour", "unknown field"),
    ("traning: {steps: 3}", "traning", "did you mean 'training'"),
    ("model: {kind: mlp, widths: [3]}", "model.widths", "unknown field"),
    (
        "training: {optimizer: {name: sgd, nesterov: true}}",
        "training.optimizer.nesterov",
        "unknown field",
    ),
    (
        "cluster: {workers: {nic: {bandwidth_gbps: 1, mtu: 9000}}}",
        "cluster.workers.nic.mtu",
        "expected one of: bandwidth_gbps, latency_us",
    ),
    ("cluster: {servers: {count: 1, cores: 4}}", "cluster.servers.cores", "unknown field"),
    ("cluster: {network: {loss: 0.01}}", "cluster.network.loss", "unknown field"),
    ("compute: {flops: 1}", "compute.flops", "unknown field"),
    ("sync: {mode: ssp, bound: 2}", "sync.bound", "unknown field"),
    ("sharding: {policy: range, shards: 2}", "sharding.shards", "unknown field"),
    (
        "communication: {compression: {kind: topk, ratio: 0.5, seed: 1}}",
        "communication.compression.seed",
        "unknown field",
    ),
    (
        "stragglers: {jitter: {distribution: lognormal, cv: 0.1, mean: 1}}",
        "stragglers.jitter.mean",
        "unknown field",
    ),
    ("pipeline: {stages: 1, interleave: 2}", "pipeline.interleave", "unknown field"),
    (
        "sync: {mode: asp}\nfaults: [{at_step: 1, worker: 0, when: now}]",
        "faults.0.when",
        "unknown field",
    ),
    ("1: 2", "1", "field names must be strings (got 1)"),
    # wrong types
    ("name: 3", "name", "must be a string (got 3)"),
    ("description: [a, b]", "description", "must be a string"),
    ("seed: one", "seed", "must be an integer (got 'one')"),
    ("model: 3", "model", "must be a mapping (got 3)"),
    ("model: [mlp]", "model", "must be a mapping"),
    ("model: {kind: mlp, hidden: 16}", "model.hidden", "must be a list (got 16)"),
    ("model: {kind: mlp, hidden: [16, x]}", "model.hidden.1", "must be an integer (got 'x')"),
    ("model: {kind: [mlp]}", "model.kind", "must be one of 'mlp', 'transformer', 'linear'"),
    ("training: {steps: 1.5}", "training.steps", "must be an integer (got 1.5)"),
    ("training: {steps: '10'}", "training.steps", "must be an integer (got '10')"),
    ("training: {steps: true}", "training.steps", "must be an integer (got true)"),
    ("training: {optimizer: {lr: fast}}", "training.optimizer.lr", "must be a number (got 'fast')"),
    ("training: {optimizer: {lr: true}}", "training.optimizer.lr", "must be a number (got true)"),
    ("training: {optimizer: {betas: 0.9}}", "training.optimizer.betas", "must be a list"),
    (
        "training: {optimizer: {betas: [0.9]}}",
        "training.optimizer.betas",
        "must be a list of 2 numbers",
    ),
    (
        "training: {optimizer: {betas: [0.9, 0.99, 0.999]}}",
        "training.optimizer.betas",
        "(got [0.9, 0.99, 0.999])",
    ),
    ("training: {optimizer: sgd}", "training.optimizer", "must be a mapping (got 'sgd')"),
    ("cluster: {workers: 4}", "cluster.workers", "must be a mapping (got 4)"),
    ("cluster: {workers: {count: null}}", "cluster.workers.count", "must be an integer (got null)"),
    ("cluster: {workers: {gpu: 100}}", "cluster.workers.gpu", "must be a string (got 100)"),
    ("cluster: {network: {fabric_gbps: fast}}", "cluster.network.fabric_gbps", "must be a number"),
    (
        "communication: {overlap: 'yes'}",
        "communication.overlap",
        "must be true or false (got 'yes')",
    ),
    ("communication: {overlap: 1}", "communication.overlap", "must be true or false (got 1)"),
    ("stragglers: {slowdown: [2.0]}", "stragglers.slowdown", "must be a mapping"),
    (
        "stragglers: {slowdown: {one: 2.0}}",
        "stragglers.slowdown.one",
        "must be an integer (got 'one')",
    ),
    ("faults: {at_step: 1, worker: 0}", "faults", "must be a list"),
    ("faults: [crash]", "faults.0", "must be a mapping (got 'crash')"),
    ("compute: {profile: 3}", "compute.profile", "must be a string (got 3)"),
    # not one of the allowed words
    (
        "model: {kind: cnn}",
        "model.kind",
        "must be one of 'mlp', 'transformer', 'linear' (got 'cnn')",
    ),
    ("model: {kind: mlp, dtype: int8}", "model.dtype", "(got 'int8')"),
    (
        "training: {optimizer: {name: rmsprop}}",
        "training.optimizer.name",
        "must be one of 'sgd', 'adam'",
    ),
    ("cluster: {workers: {device: tpu}}", "cluster.workers.device", "must be one of 'cpu', 'cuda'"),
    (
        "cluster: {network: {emulation: tc}}",
        "cluster.network.emulation",
        "must be one of 'app', 'kernel', 'none'",
    ),
    ("sync: {mode: async}", "sync.mode", "must be one of 'bsp', 'ssp', 'asp' (got 'async')"),
    (
        "sharding: {policy: hash}",
        "sharding.policy",
        "must be one of 'range', 'round_robin', 'greedy_bytes'",
    ),
    ("communication: {wire_dtype: float8}", "communication.wire_dtype", "(got 'float8')"),
    (
        "communication: {compression: {kind: fp16}}",
        "communication.compression.kind",
        "must be one of 'none', 'topk', 'int8'",
    ),
    (
        "stragglers: {jitter: {distribution: normal, cv: 0.1}}",
        "stragglers.jitter.distribution",
        "(got 'normal')",
    ),
    ("pipeline: {schedule: interleaved}", "pipeline.schedule", "must be one of 'gpipe', '1f1b'"),
    ("pipeline: {partition: random}", "pipeline.partition", "must be one of 'balanced', 'uniform'"),
    (
        "sync: {mode: asp}\nfaults: [{at_step: 1, worker: 0, kind: hang}]",
        "faults.0.kind",
        "must be one of 'crash' (got 'hang')",
    ),
    ("name: My Run", "name", "must be lowercase letters, digits, '_' or '-' (got 'My Run')"),
    ("name: ''", "name", "(got '')"),
    ("name: " + "a" * 101, "name", "must have at most 100 characters"),
    ("model: {kind: transformer, layers: 20000}", "model.layers", "must be <= 10000 (got 20000)"),
    (
        "model: {kind: mlp, hidden: [" + ", ".join(["1"] * 10001) + "]}",
        "model.hidden",
        "must have at most 10000 items (got 10001)",
    ),
    # out of range
    ("seed: -1", "seed", "must be >= 0 (got -1)"),
    ("model: {kind: mlp, input_dim: 0}", "model.input_dim", "must be > 0 (got 0)"),
    ("model: {kind: mlp, hidden: [16, -3]}", "model.hidden.1", "must be > 0 (got -3)"),
    ("model: {kind: transformer, layers: 0}", "model.layers", "must be > 0 (got 0)"),
    ("training: {steps: 0}", "training.steps", "must be > 0 (got 0)"),
    ("training: {batch_size: -8}", "training.batch_size", "must be > 0 (got -8)"),
    ("training: {steps: 10, warmup_steps: -1}", "training.warmup_steps", "must be >= 0 (got -1)"),
    ("training: {samples_per_worker: 0}", "training.samples_per_worker", "must be > 0 (got 0)"),
    ("training: {optimizer: {lr: 0}}", "training.optimizer.lr", "must be > 0"),
    ("training: {optimizer: {momentum: 1.0}}", "training.optimizer.momentum", "must be < 1"),
    (
        "training: {optimizer: {name: adam, betas: [0.9, 1.0]}}",
        "training.optimizer.betas.1",
        "must be < 1",
    ),
    ("training: {optimizer: {name: adam, eps: 0}}", "training.optimizer.eps", "must be > 0"),
    (
        "training: {optimizer: {weight_decay: -0.1}}",
        "training.optimizer.weight_decay",
        "must be >= 0",
    ),
    ("cluster: {workers: {count: 0}}", "cluster.workers.count", "must be > 0 (got 0)"),
    (
        "cluster: {workers: {count: 4, per_device: 0}}",
        "cluster.workers.per_device",
        "must be > 0 (got 0)",
    ),
    ("cluster: {servers: {count: 0}}", "cluster.servers.count", "must be > 0 (got 0)"),
    (
        "cluster: {workers: {nic: {bandwidth_gbps: 0}}}",
        "cluster.workers.nic.bandwidth_gbps",
        "must be >= 1e-06 (got 0)",
    ),
    (
        "cluster: {servers: {nic: {latency_us: -5}}}",
        "cluster.servers.nic.latency_us",
        "must be >= 0",
    ),
    ("cluster: {network: {fabric_gbps: -1}}", "cluster.network.fabric_gbps", "must be >= 1e-06"),
    ("compute: {step_time_s: 0}", "compute.step_time_s", "must be > 0"),
    ("sync: {mode: ssp, staleness: -1}", "sync.staleness", "must be >= 0 (got -1)"),
    ("sharding: {partition_bytes: 0}", "sharding.partition_bytes", "must be > 0 (got 0)"),
    (
        "communication: {compression: {kind: topk, ratio: 0}}",
        "communication.compression.ratio",
        "must be > 0",
    ),
    (
        "communication: {compression: {kind: topk, ratio: 1.5}}",
        "communication.compression.ratio",
        "must be <= 1",
    ),
    ("stragglers: {slowdown: {1: 0.5}}", "stragglers.slowdown.1", "must be >= 1.0 (got 0.5)"),
    ("stragglers: {slowdown: {-1: 2.0}}", "stragglers.slowdown.-1", "must be >= 0 (got -1)"),
    (
        "stragglers: {jitter: {distribution: lognormal, cv: -0.1}}",
        "stragglers.jitter.cv",
        "must be >= 0",
    ),
    ("pipeline: {stages: 0}", "pipeline.stages", "must be > 0 (got 0)"),
    ("pipeline: {microbatches: 0}", "pipeline.microbatches", "must be > 0 (got 0)"),
    (
        "sync: {mode: asp}\nfaults: [{at_step: -1, worker: 0}]",
        "faults.0.at_step",
        "must be >= 0 (got -1)",
    ),
    (
        "sync: {mode: asp}\nfaults: [{at_step: 1, worker: 0, restart_after_s: -1}]",
        "faults.0.restart_after_s",
        "must be >= 0",
    ),
    # above the documented bounds: finite, but more than a backend can run
    ("seed: 1180591620717411303424", "seed", "must be <= 4294967295 (got 1180591620717411303424)"),
    ("model: {kind: mlp, input_dim: 100000000}", "model.input_dim", "must be <= 10000000"),
    ("model: {kind: mlp, hidden: [16, 100000000]}", "model.hidden.1", "must be <= 10000000"),
    ("model: {kind: linear, output_dim: 100000000}", "model.output_dim", "must be <= 10000000"),
    ("model: {kind: transformer, d_model: 100000000}", "model.d_model", "must be <= 10000000"),
    ("model: {kind: transformer, vocab: 100000000}", "model.vocab", "must be <= 10000000"),
    ("model: {kind: transformer, seq_len: 10000000}", "model.seq_len", "must be <= 1000000"),
    ("training: {steps: 1000000000}", "training.steps", "must be <= 10000000 (got 1000000000)"),
    ("training: {batch_size: 1000000000}", "training.batch_size", "must be <= 10000000"),
    (
        "training: {samples_per_worker: 1000000000000}",
        "training.samples_per_worker",
        "must be <= 100000000",
    ),
    ("training: {optimizer: {lr: 1.0e+300}}", "training.optimizer.lr", "must be <= 1000.0"),
    ("training: {optimizer: {name: adam, eps: 1.0e+300}}", "training.optimizer.eps", "<= 1.0"),
    (
        "training: {optimizer: {weight_decay: 1.0e+300}}",
        "training.optimizer.weight_decay",
        "must be <= 10.0",
    ),
    ("cluster: {workers: {count: 1000000000}}", "cluster.workers.count", "must be <= 100000"),
    ("cluster: {servers: {count: 1000000000}}", "cluster.servers.count", "must be <= 10000"),
    (
        "cluster: {workers: {nic: {bandwidth_gbps: 1.0e+300}}}",
        "cluster.workers.nic.bandwidth_gbps",
        "must be <= 1000000.0 (got 1e+300)",
    ),
    (
        "cluster: {servers: {nic: {latency_us: 1.0e+300}}}",
        "cluster.servers.nic.latency_us",
        "must be <= 10000000.0",
    ),
    (
        "cluster: {workers: {nic: {latency_us: 1.0e-6}}}",
        "cluster.workers.nic.latency_us",
        "must be 0 or at least 0.001 us (1 ns) (got 1e-06)",
    ),
    (
        "cluster: {network: {fabric_gbps: 1.0e+300}}",
        "cluster.network.fabric_gbps",
        "<= 1000000000.0",
    ),
    ("compute: {step_time_s: 1.0e+300}", "compute.step_time_s", "must be <= 100000.0 (got 1e+300)"),
    ("sync: {mode: ssp, staleness: 1000000000}", "sync.staleness", "must be <= 10000000"),
    ("sharding: {partition_bytes: 10000000000000}", "sharding.partition_bytes", "<= 1000000000000"),
    ("stragglers: {slowdown: {1: 1.0e+300}}", "stragglers.slowdown.1", "must be <= 1000.0"),
    (
        "stragglers: {jitter: {distribution: lognormal, cv: 1.0e+300}}",
        "stragglers.jitter.cv",
        "must be <= 10.0 (got 1e+300)",
    ),
    ("pipeline: {microbatches: 1000000}", "pipeline.microbatches", "must be <= 10000"),
    (
        "sync: {mode: asp}\nfaults: [{at_step: 1, worker: 0, restart_after_s: 1.0e+300}]",
        "faults.0.restart_after_s",
        "must be <= 1000000.0",
    ),
    (
        "sync: {mode: asp}\nfaults: [" + ", ".join(["{at_step: 1, worker: 0}"] * 1001) + "]",
        "faults",
        "must have at most 1000 items (got 1001)",
    ),
    # not a finite number
    (
        "training: {optimizer: {lr: .nan}}",
        "training.optimizer.lr",
        "must be a finite number (got nan)",
    ),
    (
        "cluster: {workers: {nic: {bandwidth_gbps: .inf}}}",
        "cluster.workers.nic.bandwidth_gbps",
        "must be a finite number (got inf)",
    ),
    (
        "cluster: {servers: {nic: {latency_us: -.inf}}}",
        "cluster.servers.nic.latency_us",
        "(got -inf)",
    ),
    ("compute: {step_time_s: .nan}", "compute.step_time_s", "finite"),
    ("stragglers: {slowdown: {1: .inf}}", "stragglers.slowdown.1", "finite"),
    # required fields
    ("sync: {mode: asp}\nfaults: [{worker: 0}]", "faults.0.at_step", "required field is missing"),
    ("sync: {mode: asp}\nfaults: [{at_step: 3}]", "faults.0.worker", "required field is missing"),
    # inconsistent combinations inside one section
    (
        "sync: {mode: bsp, staleness: 2}",
        "sync.staleness",
        "applies to mode ssp only; remove it or set mode: ssp (got mode bsp)",
    ),
    ("sync: {mode: asp, staleness: 0}", "sync.staleness", "(got mode asp)"),
    (
        "communication: {compression: {kind: none, ratio: 0.5}}",
        "communication.compression.ratio",
        "applies to kind topk only",
    ),
    (
        "communication: {compression: {kind: int8, ratio: 0.5}}",
        "communication.compression.ratio",
        "(got kind int8)",
    ),
    (
        "training: {optimizer: {name: adam, momentum: 0.9}}",
        "training.optimizer.momentum",
        "applies to sgd only",
    ),
    (
        "training: {steps: 10, warmup_steps: 10}",
        "training.warmup_steps",
        "must be < steps=10 (got 10)",
    ),
    ("training: {steps: 10, warmup_steps: 12}", "training.warmup_steps", "(got 12)"),
    ("stragglers: {jitter: {cv: 0.3}}", "stragglers.jitter.cv", "needs a distribution"),
    (
        "stragglers: {jitter: {distribution: none, cv: 0.3}}",
        "stragglers.jitter.cv",
        "(got cv 0.3 with distribution none)",
    ),
    (
        "stragglers: {jitter: {distribution: exponential}}",
        "stragglers.jitter.cv",
        "must be > 0 with distribution exponential",
    ),
    ("model: {kind: mlp, layers: 4}", "model.layers", "does not apply to model kind 'mlp'"),
    ("model: {kind: linear, hidden: [8]}", "model.hidden", "does not apply to model kind 'linear'"),
    (
        "model: {kind: transformer, input_dim: 8}",
        "model.input_dim",
        "its fields: layers, d_model, heads, seq_len, vocab",
    ),
    (
        "model: {kind: transformer, layers: 2, d_model: 100, heads: 3}",
        "model.heads",
        "must divide d_model=100 (got 3)",
    ),
    (
        "model: {kind: transformer, layers: 2, heads: 5}",
        "model.heads",
        "must divide d_model=768 (got 5)",
    ),
    (
        "cluster: {workers: {count: 4, per_device: 5}}",
        "cluster.workers.per_device",
        "must be <= workers.count=4 (got 5)",
    ),
    (
        "cluster: {workers: {device: cuda, gpu: Z100}}",
        "cluster.workers.gpu",
        "unknown catalog GPU 'Z100' (known: ",
    ),
    ("cluster: {workers: {device: cuda, gpu: a100-80gb}}", "cluster.workers.gpu", "A100-80GB"),
    ("cluster: {workers: {device: cuda, gpu: cpu}}", "cluster.workers.gpu", "is a cpu, not a GPU"),
    (
        "cluster: {workers: {device: cpu, gpu: A100-80GB}}",
        "cluster.workers.gpu",
        "names a GPU (A100-80GB) but workers.device is cpu",
    ),
    (
        "compute: {profile: no/such/profile.json}",
        "compute.profile",
        "no/such/profile.json: no such file; expected auto, none or a profile file",
    ),
    ("compute: {profile: .}", "compute.profile", ".: not a regular file"),
    ("compute: {profile: /dev/zero}", "compute.profile", "/dev/zero: not a regular file"),
    ("compute: {profile: /etc/passwd}", "compute.profile", "/etc/passwd: not a psreal profile"),
    # inconsistent combinations across sections
    ("pipeline: {stages: 4}", "pipeline.stages", "must be <= the model's 3 layers (got 4)"),
    (
        "model: {kind: linear, input_dim: 8, output_dim: 2}\npipeline: {stages: 2}",
        "pipeline.stages",
        "model's 1 layers (got 2)",
    ),
    (
        "model: {kind: transformer, layers: 2, d_model: 16, heads: 2, seq_len: 4, vocab: 10}\n"
        "pipeline: {stages: 3}",
        "pipeline.stages",
        "must be <= the model's 2 layers (got 3)",
    ),
    (
        "pipeline: {microbatches: 3}",
        "pipeline.microbatches",
        "must divide training.batch_size=8 (got 3)",
    ),
    ("pipeline: {microbatches: 16}", "pipeline.microbatches", "(got 16)"),
    (
        "stragglers: {slowdown: {4: 2.0}}",
        "stragglers.slowdown.4",
        "no such worker: must be < cluster.workers.count=4 (got 4)",
    ),
    (
        "sync: {mode: asp}\nfaults: [{at_step: 1, worker: 4}]",
        "faults.0.worker",
        "must be < cluster.workers.count=4 (got 4)",
    ),
    (
        "sync: {mode: ssp}\nfaults: [{at_step: 10, worker: 0}]",
        "faults.0.at_step",
        "must be < training.steps=10 (got 10)",
    ),
    (
        "faults: [{at_step: 3, worker: 0}, {at_step: 3, worker: 0, restart_after_s: 1}]",
        "faults.1",
        "already crashes at step 3",
    ),
    (
        "faults: [{at_step: 3, worker: 0}, {at_step: 5, worker: 0, restart_after_s: 1}]",
        "faults.1.at_step",
        "crashed for good at step 3",
    ),
    (
        "communication: {overlap: true}\ncompute: {step_time_s: 0.01}",
        "communication.overlap",
        "backward pass's timeline",
    ),
    (
        "communication: {overlap: true}\npipeline: {stages: 2}",
        "communication.overlap",
        "not supported with pipeline.stages > 1 (got stages=2)",
    ),
    (
        "compute: {step_time_s: 0.01}\npipeline: {stages: 2}",
        "compute.step_time_s",
        "pipeline.stages=2",
    ),
    ("cluster: {servers: {count: 40}}", "cluster.servers.count", "a shard is left empty (got 40)"),
    # 3 partitions of 8, 2 and 1 elements; by byte range their midpoints fall in thirds 1, 2, 2
    (
        "model: {kind: linear, input_dim: 10, output_dim: 1}\n"
        "sharding: {policy: range, partition_bytes: 32}\ncluster: {servers: {count: 3}}",
        "cluster.servers.count",
        "shard 0 would hold no parameters under sharding.policy=range with 3 partitions "
        "(got 3 servers)",
    ),
    (
        "model: {kind: transformer, layers: 2, d_model: 64, heads: 2, seq_len: 8, vocab: 30000}\n"
        "sharding: {partition_bytes: 4}",
        "sharding.partition_bytes",
        "cuts the model into 3940608 partitions, more than 100000; use >= 160 (got 4)",
    ),
    (
        "sharding: {partition_bytes: 100000000}\ncluster: {servers: {count: 7}}",
        "cluster.servers.count",
        "must be <= 6, the number of parameter partitions",
    ),
]


@pytest.mark.parametrize(
    ("extra", "path", "fragment"),
    BAD_FILE,
    ids=[f"{c[1] or 'file'}:{i}" for i, c in enumerate(BAD_FILE)],
)
def test_bad_field_is_refused_with_path_and_message(extra: str, path: str, fragment: str) -> None:
    base = yaml.safe_load(BASE)
    base.update(yaml.load(extra, Loader=yaml.SafeLoader))  # the section replaces BASE's one
    problems = _problems(yaml.safe_dump(base))
    assert _has(problems, path, fragment), [p.line("x.yaml") for p in problems]


# (--set items on BASE, expected path, message fragment)
BAD_SET = [
    (["training.steps"], "--set", "expected field.path=value (got 'training.steps')"),
    (["training..steps=3"], "--set", "empty field name"),
    (["=3"], "--set", "empty field name"),
    (["training.stepz=5"], "training.stepz", "unknown field (did you mean 'steps'?) (from --set)"),
    (["colour=red"], "colour", "unknown field"),
    (["training.steps=0"], "training.steps", "must be > 0 (got 0) (from --set)"),
    (["training.steps=many"], "training.steps", "must be an integer (got 'many')"),
    (["sync.mode=ssp", "sync.staleness=-2"], "sync.staleness", "must be >= 0 (got -2)"),
    (["sync.staleness=2"], "sync.staleness", "applies to mode ssp only"),
    (["name.first=x"], "name.first", "cannot be set: name is not a mapping (got 't')"),
    (["faults.0.worker=1"], "faults.0", "index out of range"),
    (["model.hidden.5=3"], "model.hidden.5", "index out of range (the list has 2 entries)"),
    (["model.hidden.x=3"], "model.hidden.x", "is a list; index it by number"),
    (["stragglers.slowdown.7=2.0"], "stragglers.slowdown.7", "no such worker"),
    (["pipeline.stages=9"], "pipeline.stages", "must be <= the model's 3 layers (got 9)"),
    (["cluster.workers.gpu=H100-SXM"], "cluster.workers.gpu", "but workers.device is cpu"),
    (["training.optimizer.lr=.nan"], "training.optimizer.lr", "finite"),
    (["model={kind: transformer, heads: 7}"], "model.heads", "must divide d_model=768 (got 7)"),
]


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"), BAD_SET, ids=[" ".join(c[0]) for c in BAD_SET]
)
def test_bad_override_is_refused(overrides: list[str], path: str, fragment: str) -> None:
    problems = _problems(BASE, overrides)
    assert _has(problems, path, fragment), [p.line("x.yaml") for p in problems]


def test_override_problems_are_all_listed() -> None:
    problems = _problems(BASE, ["a", "b", "training.steps=3"])
    assert [p.message for p in problems] == [
        "expected field.path=value (got 'a')",
        "expected field.path=value (got 'b')",
    ]


def test_parse_overrides_reads_values_as_yaml() -> None:
    assert parse_overrides(
        ["a.b=1", "c=1e-3", "d.0=[1, 2]", "e=null", "f=true", "g={x: 1}", "h=a=b", "i="]
    ) == [
        (["a", "b"], 1),
        (["c"], 0.001),
        (["d", 0], [1, 2]),
        (["e"], None),
        (["f"], True),
        (["g"], {"x": 1}),
        (["h"], "a=b"),
        (["i"], ""),
    ]
    assert parse_overrides(None) == []
    with pytest.raises(ScenarioError) as info:
        parse_overrides(["nothing"])
    assert info.value.lines() == ["error: --set: expected field.path=value (got 'nothing')"]


# ------------------------------------------------------------------- several problems at once
def test_independent_problems_are_reported_together() -> None:
    # each section's own problem, plus cross-section rules over the sections that are valid
    problems = _problems(
        BASE
        + "seed: -1\n"
        + "sync: {mode: bsp, staleness: 2}\n"
        + "pipeline: {stages: 9, microbatches: 3}\n"
        + "communication: {wire_dtype: fp8}\n"
        + "stragglers: {slowdown: {7: 2.0}}\n"
        + "colour: red\n"
    )
    paths = {p.path for p in problems}
    assert {
        "seed",
        "sync.staleness",
        "pipeline.stages",
        "pipeline.microbatches",
        "communication.wire_dtype",
        "stragglers.slowdown.7",
        "colour",
    } <= paths, paths


def test_cross_rule_over_a_broken_section_stays_silent() -> None:
    # cluster is broken, so rules that read it (straggler index, empty shards) cannot be judged;
    # rules over valid sections still run
    problems = _problems(
        BASE
        + (
            "cluster: {workers: {count: 0}}\nstragglers: {slowdown: {9: 2.0}}\n"
            "pipeline: {stages: 9}\n"
        )
    )
    assert [p.path for p in problems] == ["cluster.workers.count", "pipeline.stages"]


def test_every_foreign_model_field_is_named() -> None:
    problems = _problems(BASE + "model: {kind: linear, hidden: [3], layers: 2, heads: 2}\n")
    assert {p.path for p in problems} == {"model.hidden", "model.layers", "model.heads"}


def test_unknown_top_level_key_lists_the_sections() -> None:
    (p,) = _problems(BASE + "zzz: 1\n")
    assert p.message.startswith("unknown field (expected one of: name, description, seed, model")


# ------------------------------------------------------------------------------------ files
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such file"),
        ("", "the file is empty"),
        ("\n  \n", "the file is empty"),
        ("# nothing but a comment\n", "the file is empty"),
        ("name: [x\n", "invalid YAML at line 2, column 1"),
        ("name: x\n  bad indent: 1\n", "invalid YAML at line 2"),
        ("name: x\nname: y\n", "invalid YAML at line 2, column 1: duplicate key 'name'"),
        (
            "name: x\nmodel:\n  kind: mlp\n  kind: linear\n",
            "line 4, column 3: duplicate key 'kind'",
        ),
        ("- name: x\n- name: y\n", "must be a YAML mapping of scenario fields (got a list)"),
        ("just a string\n", "(got a string)"),
        ("42\n", "(got int)"),
        ("name: x\n---\nname: y\n", "expected a single document in the stream"),
        ("name: x\n? [a, b]\n: 1\n", "a key must be a plain name (got ['a', 'b'])"),
        ("name: x\nseed: !!python/object:os.system x\n", "could not determine a constructor"),
        ("a: &a [*a]\n", "invalid YAML"),
        (b"name: \xff\xfe\n", "is not UTF-8 text"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_bad_file_is_refused(tmp_path: Path, content: str | bytes | None, fragment: str) -> None:
    f = tmp_path / "s.yaml"
    if isinstance(content, bytes):
        f.write_bytes(content)
    elif content is not None:
        f.write_text(content)
    with pytest.raises(ScenarioError) as info:
        load_scenario(f)
    lines = info.value.lines()
    assert len(lines) == 1 and LINE.match(lines[0]), lines
    assert lines[0].startswith(f"error: {f}: ")
    assert fragment in lines[0], lines[0]


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path)
    assert info.value.lines() == [f"error: {tmp_path}: is a directory, not a scenario file"]


def test_loading_writes_nothing(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(BASE)
    before = sorted(tmp_path.rglob("*"))
    load_scenario(f, ["training.steps=20"])
    with pytest.raises(ScenarioError):
        load_scenario(f, ["training.steps=0"])
    assert sorted(tmp_path.rglob("*")) == before


# ----------------------------------------------------------------------------- what does load
def test_defaults_fill_a_minimal_scenario() -> None:
    s = scenario_from_dict({"name": "min"})
    assert s.model.kind == "mlp" and s.model.hidden == [1024, 1024] and s.model.input_dim == 784
    assert s.model.layers is None
    assert s.sync.mode == "bsp" and s.sync.staleness is None and s.sync.bound == 0
    assert (
        s.cluster.workers.nic.bandwidth_gbps == 1.0 and s.cluster.servers.nic.bandwidth_gbps == 2.0
    )
    assert s.measured_steps == s.training.steps - s.training.warmup_steps
    assert s.training.optimizer.betas == (0.9, 0.999)


def test_ssp_staleness_defaults_to_two_and_bounds() -> None:
    assert scenario_from_dict({"name": "a", "sync": {"mode": "ssp"}}).sync.bound == 2
    assert (
        scenario_from_dict({"name": "a", "sync": {"mode": "ssp", "staleness": 0}}).sync.bound == 0
    )
    assert scenario_from_dict({"name": "a", "sync": {"mode": "asp"}}).sync.bound is None


def test_transformer_defaults_and_null_shape_fields() -> None:
    t = scenario_from_dict({"name": "a", "model": {"kind": "transformer", "layers": 2}}).model
    assert (t.layers, t.d_model, t.heads, t.seq_len, t.vocab) == (2, 768, 12, 256, 32000)
    assert t.input_dim is None and t.hidden is None
    # null means "the default", and other kinds' fields may be null
    m = scenario_from_dict(
        {"name": "a", "model": {"kind": "mlp", "hidden": None, "layers": None}}
    ).model
    assert m.hidden == [1024, 1024] and m.layers is None


def test_yaml_conveniences(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    # numbers the way people write them: 1e-3 is a float (PyYAML alone reads a string), ints where
    # floats go
    f.write_text(
        "name: conv\ntraining: {optimizer: {lr: 1e-3, eps: 1E-8}}\n"
        "cluster: {workers: {nic: {bandwidth_gbps: 5}}}\n"
    )
    s = load_scenario(f)
    assert s.training.optimizer.lr == 0.001 and s.training.optimizer.eps == 1e-8
    assert s.cluster.workers.nic.bandwidth_gbps == 5.0
    # merge keys: the mapping's own keys override the merged ones
    f.write_text(
        "name: merge\n"
        "cluster:\n"
        "  workers: {nic: &nic {bandwidth_gbps: 5, latency_us: 20}}\n"
        "  servers: {nic: {<<: *nic, latency_us: 7}}\n"
    )
    s = load_scenario(f)
    assert s.cluster.servers.nic.bandwidth_gbps == 5.0 and s.cluster.servers.nic.latency_us == 7.0


def test_catalog_gpus_are_accepted_with_cuda() -> None:
    cat = load_catalog()
    for name in cat.names():
        if cat[name].kind == "gpu":
            s = scenario_from_dict(
                {"name": "g", "cluster": {"workers": {"device": "cuda", "gpu": name}}}
            )
            assert s.cluster.workers.gpu == name


def test_profile_file_must_be_a_profile(tmp_path: Path) -> None:
    p = tmp_path / "prof.json"
    p.write_text("{}")
    (problem,) = _problems(BASE + f"compute: {{profile: {p}}}\n")
    assert problem.path == "compute.profile" and "not a psreal profile" in problem.message
    p.write_text(
        Profile(key={}, host="h", device_name="cpu", cores=1, step_compute_s=0.01).model_dump_json()
    )
    assert scenario_from_dict({"name": "p", "compute": {"profile": str(p)}}).compute.profile == str(
        p
    )
    assert (
        scenario_from_dict({"name": "p", "compute": {"profile": "none"}}).compute.profile == "none"
    )


def test_scenario_is_frozen() -> None:
    s = scenario_from_dict({"name": "f"})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is an implementation detail
        s.seed = 3  # type: ignore[misc]


def test_resolved_yaml_fills_every_default_and_round_trips() -> None:
    s = scenario_from_dict(
        yaml.safe_load(BASE + "stragglers: {slowdown: {1: 2.0}}\nsync: {mode: ssp}\n")
    )
    text = resolved_yaml(s)
    data = yaml.safe_load(text)
    assert set(data) == set(Scenario.model_fields)
    assert data["sync"] == {"mode": "ssp", "staleness": 2}
    assert data["stragglers"]["slowdown"] == {1: 2.0}
    assert "layers" not in data["model"]  # other kinds' fields are left out
    assert scenario_from_dict(data) == s


def test_json_schema_describes_every_section() -> None:
    schema = json_schema()
    assert set(schema["properties"]) == set(Scenario.model_fields)
    assert schema["required"] == ["name"]
    assert schema["additionalProperties"] is False


# -------------------------------------------------------------------------------- Hypothesis
GPUS = [n for n in load_catalog().names() if load_catalog()[n].kind == "gpu"]
pos_float = st.floats(min_value=1e-4, max_value=1e3, allow_nan=False, allow_infinity=False)
unit_float = st.floats(min_value=0.0, max_value=0.999, allow_nan=False)


@st.composite
def valid_scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A random scenario dict that satisfies every rule of the format (sections may be left out)."""
    kind = draw(st.sampled_from(["linear", "mlp", "transformer"]))
    if kind == "linear":
        model: dict[str, Any] = {
            "kind": kind,
            "input_dim": draw(st.integers(1, 64)),
            "output_dim": draw(st.integers(1, 16)),
        }
        units = 1
    elif kind == "mlp":
        hidden = draw(st.lists(st.integers(1, 48), max_size=3))
        model = {
            "kind": kind,
            "input_dim": draw(st.integers(1, 64)),
            "hidden": hidden,
            "output_dim": draw(st.integers(1, 16)),
        }
        units = len(hidden) + 1
    else:
        heads = draw(st.integers(1, 4))
        layers = draw(st.integers(1, 4))
        model = {
            "kind": kind,
            "layers": layers,
            "heads": heads,
            "d_model": heads * draw(st.integers(1, 8)),
            "seq_len": draw(st.integers(1, 16)),
            "vocab": draw(st.integers(1, 64)),
        }
        units = layers
    model["dtype"] = draw(st.sampled_from(["float32", "bfloat16", "float16"]))

    stages = draw(st.integers(1, units))
    microbatches = draw(st.integers(1, 4))
    steps = draw(st.integers(1, 100))
    opt_name = draw(st.sampled_from(["sgd", "adam"]))
    optimizer: dict[str, Any] = {
        "name": opt_name,
        "lr": draw(pos_float),
        "weight_decay": draw(unit_float),
    }
    if opt_name == "sgd":
        optimizer["momentum"] = draw(unit_float)
    else:
        optimizer["betas"] = [draw(unit_float), draw(unit_float)]
        optimizer["eps"] = draw(st.floats(min_value=1e-12, max_value=1.0))
    training = {
        "batch_size": microbatches * draw(st.integers(1, 16)),
        "steps": steps,
        "warmup_steps": draw(st.integers(0, steps - 1)),
        "samples_per_worker": draw(st.integers(1, 5000)),
        "optimizer": optimizer,
    }

    workers = draw(st.integers(1, 8))
    device = draw(st.sampled_from(["cpu", "cuda"]))
    latency = st.just(0.0) | st.floats(1e-3, 1e4)  # 0, or at least 1 ns
    nic = st.fixed_dictionaries({"bandwidth_gbps": pos_float, "latency_us": latency})
    cluster: dict[str, Any] = {
        "workers": {
            "count": workers,
            "device": device,
            "per_device": draw(st.integers(1, workers)),
            "gpu": draw(st.sampled_from(GPUS))
            if device == "cuda" and draw(st.booleans())
            else None,
            "nic": draw(nic),
        },
        "servers": {"count": draw(st.integers(1, 4)), "nic": draw(nic)},
        "network": {
            "emulation": draw(st.sampled_from(["app", "kernel", "none"])),
            "fabric_gbps": draw(st.none() | pos_float),
        },
    }
    mode = draw(st.sampled_from(["bsp", "ssp", "asp"]))
    sync: dict[str, Any] = {"mode": mode}
    if mode == "ssp" and draw(st.booleans()):
        sync["staleness"] = draw(st.integers(0, 10))
    comp_kind = draw(st.sampled_from(["none", "topk", "int8"]))
    compression: dict[str, Any] = {"kind": comp_kind}
    if comp_kind == "topk":
        compression["ratio"] = draw(st.floats(min_value=0.001, max_value=1.0))
    dist = draw(st.sampled_from(["none", "lognormal", "exponential"]))
    faults = []
    # one crash per worker at most (a second one must differ in step and follow a restart)
    for w in draw(st.sets(st.integers(0, workers - 1), max_size=2)):
        faults.append(
            {
                "at_step": draw(st.integers(0, steps - 1)),
                "worker": w,
                "kind": "crash",
                "restart_after_s": draw(st.none() | st.floats(0, 100)),
            }
        )
    step_time_s = draw(st.none() | pos_float) if stages == 1 else None
    sections: dict[str, Any] = {
        "description": draw(st.text(alphabet="abcdefghij klmnop,.()", max_size=40)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "model": model,
        "training": training,
        "cluster": cluster,
        "compute": {
            "step_time_s": step_time_s,
            "profile": draw(st.sampled_from(["auto", "none"])),
        },
        "sync": sync,
        "sharding": {
            "policy": draw(st.sampled_from(["range", "round_robin", "greedy_bytes"])),
            "partition_bytes": draw(st.sampled_from([8, 64, 256, 4096, 4_000_000])),
        },
        "communication": {
            "wire_dtype": draw(st.sampled_from(["float32", "float16", "bfloat16"])),
            "compression": compression,
            "overlap": draw(st.booleans()) if stages == 1 and step_time_s is None else False,
        },
        "stragglers": {
            "slowdown": draw(
                st.dictionaries(st.integers(0, workers - 1), st.floats(1.0, 10.0), max_size=3)
            ),
            "jitter": {
                "distribution": dist,
                "cv": 0.0 if dist == "none" else draw(st.floats(0.01, 2.0)),
            },
        },
        "pipeline": {
            "stages": stages,
            "microbatches": microbatches,
            "schedule": draw(st.sampled_from(["gpipe", "1f1b"])),
            "partition": draw(st.sampled_from(["balanced", "uniform"])),
        },
        "faults": faults,
    }
    # leave some sections out: their defaults must keep the scenario valid
    optional = {"description", "seed", "compute", "communication", "stragglers", "faults", "sync"}
    keep = draw(st.sets(st.sampled_from(sorted(optional))))
    data = {"name": draw(st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True))}
    data.update({k: v for k, v in sections.items() if k not in optional or k in keep})
    if data.get("faults") and "sync" not in data:
        data["sync"] = sync
    # a shard that would hold no partition is refused; keep only plans without one
    from types import SimpleNamespace

    from pssim.scenario import ClusterSpec, ModelSpec, ShardingSpec

    plan = plan_shards(
        SimpleNamespace(  # type: ignore[arg-type]
            model=ModelSpec.model_validate(model),
            sharding=ShardingSpec.model_validate(sections["sharding"]),
            cluster=ClusterSpec.model_validate(cluster),
        )
    )
    assume(all(plan.shards))
    return data


HYPO = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TMP = Path(tempfile.mkdtemp(prefix="pssim-test-scenario-"))


@HYPO
@given(valid_scenarios())
def test_valid_scenarios_validate_and_round_trip(data: dict[str, Any]) -> None:
    s = scenario_from_dict(data)
    f = _TMP / "resolved.yaml"
    f.write_text(resolved_yaml(s), encoding="utf-8")
    again = load_scenario(f)
    assert again == s
    assert resolved_yaml(again) == resolved_yaml(s)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) below node, mappings and lists included, the root excluded."""
    out: list[tuple[tuple[Any, ...], Any]] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for k, v in items:
        out.append(((*prefix, k), v))
        out += _paths(v, (*prefix, k))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for seg in path:
        data = data[seg]
    return data


def _wrong_values(v: Any) -> list[Any]:
    """Values that are never acceptable where v stands in a valid scenario."""
    if isinstance(v, bool):
        return ["zz", 2, [True]]
    if isinstance(v, int | float):
        return [-1, "zz", [1], {"a": 1}, float("nan"), True]  # every number in the format is >= 0
    if isinstance(v, str):
        return [3, [v], {"a": v}]
    if v is None:
        return [[1], {"a": 1}]
    return [5, "zz"] if isinstance(v, dict | list) and v else ["zz"]


@st.composite
def corrupted_scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """A valid scenario with one thing broken, and the path of what was broken."""
    data = draw(valid_scenarios())
    how = draw(st.sampled_from(["delete", "insert", "replace"]))
    paths = _paths(data)
    if how == "delete":
        required = [("name",)] + [
            (*p, k)
            for p, v in paths
            if p[0] == "faults" and len(p) == 2
            for k in ("at_step", "worker")
        ]
        path = draw(st.sampled_from(required))
        del _get(data, path[:-1])[path[-1]]
        return data, path
    if how == "insert":
        mappings = [()] + [p for p, v in paths if isinstance(v, dict)]
        where = draw(st.sampled_from(mappings))
        key = draw(st.sampled_from(["zz_unknown", "Steps", "count ", "x"]))
        _get(data, where)[key] = draw(st.integers() | st.text(max_size=3) | st.none())
        return data, (*where, key)
    replaceable = [(p, v) for p, v in paths if p != ("description",)]
    path, v = draw(st.sampled_from(replaceable))
    _get(data, path[:-1])[path[-1]] = draw(st.sampled_from(_wrong_values(v)))
    return data, path


@HYPO
@given(corrupted_scenarios())
def test_corrupted_scenarios_raise_only_scenario_error(
    case: tuple[dict[str, Any], tuple[Any, ...]],
) -> None:
    data, path = case
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, "c.yaml")
    lines = info.value.lines()
    assert lines and all(LINE.match(line) for line in lines), lines
    # the problem is reported in the section that was broken
    assert any(p.path.split(".")[0] == str(path[0]) for p in info.value.problems), (path, lines)


def _as_yaml_value(v: Any) -> str:
    """v as a user types it after `--set a.b=`: YAML flow style, strings quoted."""
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a YAML double-quoted scalar
    text = yaml.safe_dump(
        v, default_flow_style=True, width=10**9, allow_unicode=True, sort_keys=False
    )
    return text.removesuffix("\n...\n").strip()


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = data
    for seg in path[:-1]:
        if isinstance(node, dict) and node.get(seg) is None:
            node[seg] = {}
        node = node[seg]
    node[path[-1]] = value


def _outcome(data: dict[str, Any], overrides: list[str] | None = None) -> Any:
    try:
        return scenario_from_dict(data, "o.yaml", overrides)
    except ScenarioError as exc:
        return sorted(
            (p.path, p.message.removesuffix(" (from --set)")) for p in exc.problems
        )  # order is not the contract


@HYPO
@given(valid_scenarios(), valid_scenarios(), st.data())
def test_set_is_the_same_as_editing_the_file(
    a: dict[str, Any], b: dict[str, Any], data: st.DataObject
) -> None:
    # a path of b (leaf or whole section) set to b's value on a: same Scenario, or same problems
    path, value = data.draw(st.sampled_from(_paths(b)))
    assume(all(isinstance(seg, str) for seg in path))  # list indices need the list in a as well
    edited = copy.deepcopy(a)
    _set(edited, path, value)
    key = ".".join(map(str, path))
    assert _outcome(a, [f"{key}={_as_yaml_value(value)}"]) == _outcome(edited)


# ------------------------------------------------------------------------------ odds and ends
def test_switching_model_kind_by_set_needs_the_old_fields_cleared() -> None:
    problems = _problems(BASE, ["model.kind=transformer"])
    assert {p.path for p in problems} == {"model.input_dim", "model.hidden", "model.output_dim"}
    s = scenario_from_dict(
        yaml.safe_load(BASE),
        overrides=[
            "model.kind=transformer",
            "model.input_dim=null",
            "model.hidden=null",
            "model.output_dim=null",
            "model.layers=2",
            "sharding.partition_bytes=4000000",
        ],
    )
    assert s.model.kind == "transformer" and s.model.layers == 2 and s.model.hidden is None


def test_catalog_problems_use_the_same_line_format(tmp_path: Path) -> None:
    f = tmp_path / "cat.yaml"
    f.write_text("X1:\n  kind: gpu\n  peak_tflop: 3\n  memory_gb: '80'\n")
    with pytest.raises(ScenarioError) as info:
        load_catalog(str(f))
    lines = info.value.lines()
    assert all(LINE.match(line) for line in lines)
    assert f"error: {f}: X1.peak_tflop: unknown field (did you mean 'peak_tflops'?)" in lines
    assert f"error: {f}: X1.memory_gb: must be a number (got '80')" in lines


# ------------------------------------------------------- what validates runs: files and sizes
@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "large", "grown"])
def test_only_regular_files_of_bounded_size_are_read(tmp_path: Path, kind: str) -> None:
    """Each refused at once in one line naming the file: a FIFO blocked forever, /dev/zero
    exhausted memory."""
    f = tmp_path / "s.yaml"
    if kind == "fifo":
        os.mkfifo(f)
        fragment = "is a named pipe (FIFO), not a regular file"
    elif kind == "device":
        f = Path("/dev/zero")
        fragment = "is a character device, not a regular file"
    elif kind == "directory":
        f.mkdir()
        fragment = "is a directory, not a scenario file"
    elif kind == "large":
        f.write_bytes(b"name: x\n" + b" " * MAX_SCENARIO_BYTES)
        fragment = f"more than the {MAX_SCENARIO_BYTES} (1 MB) a scenario file may have"
    else:  # at the limit exactly: read, and a valid scenario
        f.write_bytes(b"name: x\n" + b"#" * (MAX_SCENARIO_BYTES - 9) + b"\n")
        assert f.stat().st_size == MAX_SCENARIO_BYTES and load_scenario(f).name == "x"
        return
    t0 = time.monotonic()
    with pytest.raises(ScenarioError) as info:
        load_scenario(f)
    assert time.monotonic() - t0 < 5
    assert info.value.lines() == [f"error: {f}: {info.value.problems[0].message}"]
    assert fragment in info.value.problems[0].message


def test_a_billion_servers_is_refused_at_once() -> None:
    """`cluster.servers.count: 1e9` validated for 15 s (building a plan of a billion shards), then
    crashed; every cross-check is O(fields) now, and the bound refuses it."""
    t0 = time.monotonic()
    problems = _problems(BASE, ["cluster.servers.count=1000000000"])
    assert time.monotonic() - t0 < 2
    assert [(p.path, p.message) for p in problems] == [
        ("cluster.servers.count", "must be <= 10000 (got 1000000000) (from --set)")
    ]
    t0 = time.monotonic()  # at the bound: refused from the partition count, no plan built
    (p,) = _problems(BASE, ["cluster.servers.count=10000"])
    assert time.monotonic() - t0 < 2 and "a shard is left empty" in p.message


# (--set items on BASE, the field refused, a fragment of the message): each field within its
# bounds, the scenario too large for a backend as a whole
TOO_MUCH = [
    (
        ["training.steps=10000000", "cluster.workers.count=100"],
        "training.steps",
        "the simulator would hold about 1.6 TB (records of 100 workers x 1 pipeline stages x "
        "10000000 steps, and x 1 shards for the gradients), more than the limit of 8 GB",
    ),
    (
        ["training.steps=1000", "cluster.workers.count=50000", "cluster.servers.count=3"],
        "cluster.workers.count",
        "the simulation would take about 3.21e+09 events and messages (50000 workers",
    ),
    (
        ["compute.step_time_s=100000", "training.steps=30"],
        "compute.step_time_s",
        "the run would reach about 3e+06 s of simulated time (30 steps x (compute 1e+05 s",
    ),
    (
        ["stragglers.slowdown={1: 1000}", "compute.step_time_s=10", "training.steps=300"],
        "stragglers.slowdown.1",
        "more than the 2e6 s the simulator's clock keeps exact",
    ),
    (
        ["cluster.workers.nic.bandwidth_gbps=1.0e-6", "training.steps=1000", "model.hidden=[1000]"],
        "cluster.workers.nic.bandwidth_gbps",
        "s of simulated time",
    ),
    (
        [
            "faults=[{at_step: 1, worker: 0, restart_after_s: 1000000}, "
            "{at_step: 2, worker: 1, restart_after_s: 1000000}]",
            "sync.mode=asp",
        ],
        "faults.0.restart_after_s",
        "+ restarts 2e+06 s",
    ),
    (
        ["training.batch_size=10000000", "model.hidden=[1000000]"],
        "training.batch_size",
        "psreal: one process would hold about",
    ),
    (
        ["training.samples_per_worker=100000000", "model.input_dim=10000000"],
        "training.samples_per_worker",
        "psreal: one process would hold about 8",
    ),
    (
        [
            "model.hidden=[100000, 100000]",
            "sharding.partition_bytes=4000000000",
            "cluster.workers.count=100000",
            "training.steps=3",
        ],
        "cluster.workers.count",
        "psreal: its processes would hold about",
    ),
    (
        [
            "model.hidden=[" + ", ".join(["4"] * 9999) + "]",
            "pipeline.stages=5000",
            "cluster.workers.count=1",
            "training.steps=1",
            "training.warmup_steps=0",
            "sharding.partition_bytes=4000000",
        ],
        "pipeline.stages",
        "10000 layers cut into 5000 stages",
    ),
]


@pytest.mark.parametrize(("overrides", "path", "fragment"), TOO_MUCH, ids=lambda v: str(v)[:40])
def test_what_no_backend_can_run_is_refused_with_its_estimate(
    overrides: list[str], path: str, fragment: str
) -> None:
    t0 = time.monotonic()
    problems = _problems(BASE, overrides)
    assert time.monotonic() - t0 < 5
    assert any(p.path == path and fragment in p.message for p in problems), [
        p.line("x.yaml") for p in problems
    ]


def _profile_file(tmp_path: Path, **kw: Any) -> Path:
    fields: dict[str, Any] = dict(key={}, host="h", device_name="cpu", cores=1, step_compute_s=0.01)
    p = tmp_path / "prof.json"
    p.write_text(json.dumps({**fields, **kw}))
    return p


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"step_compute_s": float("inf")}, "step_compute_s is inf, not a time of at most 1e5 s"),
        ({"ops": {"worker_pack": {"a": 1e300}}}, "ops.worker_pack.a is 1e+300"),
        ({"compute_samples_s": [0.0, 0.0]}, "compute_samples_s holds a time <= 0"),
        ({"cores": 10**9}, "cores is 1000000000, not 0 to 1e5"),
    ],
)
def test_a_profile_the_simulator_cannot_compute_with_is_refused(
    tmp_path: Path, fields: dict[str, Any], fragment: str
) -> None:
    p = _profile_file(tmp_path, **fields)
    (problem,) = _problems(BASE, [f"compute.profile={p}"])
    assert problem.path == "compute.profile"
    assert problem.message.startswith(f"{p}: not a usable profile ("), problem.message
    assert fragment in problem.message


def test_a_profile_of_other_pipeline_stages_is_refused(tmp_path: Path) -> None:
    p = _profile_file(tmp_path, stage_fwd_s=[0.1, 0.1], stage_bwd_s=[0.2, 0.2])
    (problem,) = _problems(BASE, [f"compute.profile={p}", "pipeline.stages=3"])
    assert problem.path == "compute.profile"
    assert "measured 2 pipeline stages, not pipeline.stages=3" in problem.message
    assert scenario_from_dict(yaml.safe_load(BASE), "x", [f"compute.profile={p}"])


@HYPO
@given(
    st.lists(st.integers(1, 60), min_size=1, max_size=4),
    st.integers(1, 40),
    st.sampled_from([1, 2, 4, 8, 12, 64]),
    st.sampled_from(["range", "round_robin", "greedy_bytes"]),
    st.sampled_from(["float32", "float16"]),
)
def test_the_empty_shard_check_agrees_with_the_plan(
    hidden: list[int], servers: int, pb: int, policy: str, dtype: str
) -> None:
    """The cross-check finds an empty shard without building the plan; it must be the plan's."""
    from pssim.scenario.checks import _first_empty_shard

    data = {
        "name": "e",
        "model": {"kind": "mlp", "input_dim": 3, "hidden": hidden, "output_dim": 2, "dtype": dtype},
        "sharding": {"policy": policy, "partition_bytes": pb},
    }
    s = scenario_from_dict(data)  # one shard: never empty
    plan = plan_shards(s.model_copy(update={"cluster": ClusterSpec(servers={"count": servers})}))
    empty = [k for k, parts in enumerate(plan.shards) if not parts]
    found = _first_empty_shard(s.model, pb, servers, policy)
    if plan.n_partitions < servers:
        assert found is not None and empty
    else:
        assert found == (empty[0] if empty else None)
