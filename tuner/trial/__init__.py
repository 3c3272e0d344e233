"""One trial: build, fit, evaluate and save a configuration (``run_trial``), its per-epoch checkpoints, each
trial in its own process (``isolated``), data fed from the accelerator, the frozen-backbone feature cache, mixed
precision and JIT, and the ``Objective`` that runs a configuration as a trial of the study and records how it ended.

Nothing here imports Keras until a trial runs.
"""

from __future__ import annotations

from tuner.trial._accel import POLICIES, accel_of, apply_jit, check_precision, precision_policy, share_gpu_env
from tuner.trial._callbacks import EpochHook, callback_classes, restore, rng_states
from tuner.trial._checkpoint import Checkpoint, FILE, Writer, discard, read, read_meta, same_config, write
from tuner.trial._cost import activations, all_layers, multiply_adds
from tuner.trial._device_data import check_device_data, device_batches, wanted
from tuner.trial._features import ENV_VAR, HeadOnly, cache_path, default_cache_dir, features, head_only
from tuner.trial._isolate import ChildError, IsolatedRunner, TrialCrashed, crash_reason, isolated
from tuner.trial._objective import EpochPruning, Objective, Runner, fail_reason, failure_of, is_out_of_memory
from tuner.trial._runner import FitOptions, TrialDiverged, TrialOutcome, fit_options, long_lived, model_spec, run_trial

__all__ = [
    "Checkpoint",
    "ChildError",
    "ENV_VAR",
    "EpochHook",
    "EpochPruning",
    "FILE",
    "FitOptions",
    "HeadOnly",
    "IsolatedRunner",
    "Objective",
    "POLICIES",
    "Runner",
    "TrialCrashed",
    "TrialDiverged",
    "TrialOutcome",
    "Writer",
    "accel_of",
    "activations",
    "all_layers",
    "apply_jit",
    "cache_path",
    "callback_classes",
    "check_device_data",
    "check_precision",
    "crash_reason",
    "default_cache_dir",
    "device_batches",
    "discard",
    "fail_reason",
    "failure_of",
    "features",
    "fit_options",
    "head_only",
    "is_out_of_memory",
    "isolated",
    "long_lived",
    "model_spec",
    "multiply_adds",
    "precision_policy",
    "read",
    "read_meta",
    "restore",
    "rng_states",
    "run_trial",
    "same_config",
    "share_gpu_env",
    "wanted",
    "write",
]
