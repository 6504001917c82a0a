"""Why int8 barely pays on this CPU: MobileNetV2 (224 px, random weights) in ExecuTorch XNNPACK
fp32 against int8 (leannet's PT2E build with its dynamic batch, and a static-batch capture), and
in ONNX Runtime fp32 against five int8 quantizer settings; all files timed together in
interleaved rounds on one thread, batch 1. Also prints whether the int8 .pte left any operator
outside the XNNPACK delegate (a slow portable fallback would explain a slow int8 file).

    python benchmarks/int8_kernels.py --rounds 8 --runs 10
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision

from leannet.deploy.quantize import _quantizer, quantize_ptq
from leannet.deploy.runtimes import get_runtime
from leannet.export import export_onnx, fold_batchnorm, onnx_session
from leannet.measure import Timed, time_latencies


def executorch_files(model, x, calib, folder: Path) -> dict[str, Path]:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    runtime = get_runtime("executorch")
    paths = {name: folder / f"{name}.pte" for name in ("et fp32", "et int8", "et int8 static")}
    runtime.export(model, paths["et fp32"], x, "fp32")
    info = runtime.export(quantize_ptq(model, x, calib), paths["et int8"], x, "int8")
    print("int8 .pte delegates:", info["delegates"])
    prepared = prepare_pt2e(torch.export.export(fold_batchnorm(model), (x,)).module(),
                            _quantizer(True))
    for batch in calib:
        for i in range(batch.shape[0]):
            prepared(batch[i:i + 1])
    runtime.export(convert_pt2e(prepared), paths["et int8 static"], x, "int8")
    return paths


def onnx_files(model, x, calib, folder: Path) -> dict[str, Path]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    export_onnx(model, folder / "fp32.onnx", tuple(x.shape))
    quant_pre_process(str(folder / "fp32.onnx"), str(folder / "prep.onnx"), skip_symbolic_shape=True)
    u8, s8 = QuantType.QUInt8, QuantType.QInt8
    settings = {"ort int8 QDQ u8s8 reduce_range (leannet)": (QuantFormat.QDQ, u8, s8, True),
                "ort int8 QDQ u8s8": (QuantFormat.QDQ, u8, s8, False),
                "ort int8 QOperator u8s8": (QuantFormat.QOperator, u8, s8, False),
                "ort int8 QDQ u8u8": (QuantFormat.QDQ, u8, u8, False),
                "ort int8 QDQ s8s8": (QuantFormat.QDQ, s8, s8, False)}
    paths = {"ort fp32": folder / "fp32.onnx"}
    for name, (fmt, act, weight, reduce) in settings.items():
        paths[name] = folder / f"{len(paths)}.onnx"
        reader = Reader([{"input": b[:1].numpy()} for b in calib])
        quantize_static(str(folder / "prep.onnx"), str(paths[name]), reader, quant_format=fmt,
                        activation_type=act, weight_type=weight, reduce_range=reduce,
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax)
    return paths


class Reader:
    """onnxruntime's calibration reader over a list of feeds."""

    def __init__(self, feeds: list) -> None:
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per file per round")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2().eval()
    x = torch.randn(1, 3, 224, 224)
    calib = [torch.randn(8, 3, 224, 224) for _ in range(2)]
    folder = Path(tempfile.mkdtemp(prefix="int8-kernels-"))
    items = {}
    for name, path in executorch_files(model, x, calib, folder).items():
        session = get_runtime("executorch").load(path, 1)
        items[name] = Timed(lambda s=session: s.run(x.numpy()), "executorch", name[3:], 1,
                            session.set_threads)
    for name, path in onnx_files(model, x, calib, folder).items():
        session = onnx_session(path, 1)
        feed = {"input": x.numpy().astype(np.float32)}
        items[name] = Timed(lambda s=session, f=feed: s.run(None, f), "onnxruntime", name[4:], 1)
    times = time_latencies(items, threads=1, runs=args.runs * args.rounds, rounds=args.rounds,
                           warn=False)
    for name, latency in times.items():
        print(f"{name:45s} {latency.short()}")


if __name__ == "__main__":
    main()
