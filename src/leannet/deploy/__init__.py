"""Deployment: int8 quantization (PT2E PTQ/QAT), export to on-device runtimes (ONNX Runtime,
ExecuTorch/XNNPACK) and measurement in them, because the latency that matters is the phone's,
in the runtime and precision that ship.

    from leannet.deploy.matrix import deploy_matrix
    rows = deploy_matrix(model, example, ["onnxruntime", "executorch"], ["fp32", "int8"],
                         calibration=real_batches)

`runtimes/` is the registry (one file per runtime), `quantize` the PT2E flow, `matrix` builds,
checks and times files, `check`/`score` compare and score them, `latency` is the runtime clock
and per-layer table for latency-targeted pruning, `alignment` the channel multiples the
runtimes' kernels like (`leannet prune`'s default --round-to); the jobs are in
`leannet.jobs.deploy`.
"""
