"""``langgrasp detect``: run an exported bundle on one picture (torch-free).

Only argparse-level imports at the top; the engine loads inside the handler.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEPTH_SCALE_M = 0.001
"""Metres per unit of a 16-bit depth PNG (RealSense z16 default depth unit, 1 mm)."""


def register_cli(sub: argparse._SubParsersAction) -> None:
    """Add the ``detect`` subcommand."""
    parser = sub.add_parser(
        "detect",
        help="detect grasps on one image with an exported model bundle (no torch needed)",
        description="Run an exported bundle (langgrasp export) on an RGB image and a command; "
        "print the ranked grasps in image pixels and optionally write an overlay picture.",
    )
    parser.add_argument("--bundle", type=Path, required=True, help="bundle folder")
    parser.add_argument("--image", type=Path, required=True, help="RGB image file (PNG, JPEG)")
    parser.add_argument(
        "--depth",
        type=Path,
        default=None,
        help="optional aligned 16-bit depth PNG; the depth at each grasp centre is reported",
    )
    parser.add_argument(
        "--depth-scale",
        type=float,
        default=DEPTH_SCALE_M,
        help="metres per depth unit (default: %(default)s)",
    )
    parser.add_argument("--command", required=True, help='instruction, e.g. "pick the red mug"')
    parser.add_argument(
        "--providers",
        default="tensorrt,cuda,cpu",
        help="execution providers in order of preference (default: %(default)s)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "fp16", "int8"),
        help="frame graph (default: auto = int8 on CPU, fp16 on CUDA, when the bundle has them "
        "and they agreed with fp32 at export)",
    )
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--trt-cache", type=Path, default=None, help="TensorRT engine cache folder")
    parser.add_argument("--out", type=Path, default=None, help="write an overlay picture here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_cmd_detect)


def _read_rgb(path: Path):  # -> np.ndarray
    import cv2
    import numpy as np

    from langgrasp.errors import InputError

    if not path.is_file():
        raise InputError(f"image {path} does not exist")
    data = np.fromfile(str(path), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError(f"cannot decode {path} as an image; give a PNG or JPEG file")
    return np.ascontiguousarray(bgr[..., ::-1])


def _read_depth(path: Path, shape: tuple[int, int], scale: float):  # -> np.ndarray
    import cv2
    import numpy as np

    from langgrasp.errors import InputError

    if not path.is_file():
        raise InputError(f"depth image {path} does not exist")
    data = np.fromfile(str(path), dtype=np.uint8)
    depth = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if depth is None or depth.ndim != 2:
        raise InputError(f"{path} is not a single-channel depth image (16-bit PNG expected)")
    if depth.shape != shape:
        raise InputError(
            f"depth image {path} is {depth.shape[1]}x{depth.shape[0]} but the colour image is "
            f"{shape[1]}x{shape[0]}; align depth to colour first"
        )
    return depth.astype(np.float32) * np.float32(scale)


def _cmd_detect(args: argparse.Namespace) -> int:
    from langgrasp.runtime.engine import GraspDetector

    rgb = _read_rgb(args.image)
    depth = None
    if args.depth is not None:
        depth = _read_depth(args.depth, rgb.shape[:2], args.depth_scale)
    detector = GraspDetector(
        args.bundle,
        providers=args.providers,
        precision=args.precision,
        threads=args.threads,
        trt_cache_dir=args.trt_cache,
    )
    detection = detector.detect(rgb, args.command)
    result = detection.to_dict()
    result.update(
        image=str(args.image),
        model=detector.manifest.model,
        provider=detector.providers[0],
        precision=detector.precision,
    )
    if depth is not None:
        for grasp in result["grasps"]:
            row = min(max(round(grasp["y"]), 0), depth.shape[0] - 1)
            col = min(max(round(grasp["x"]), 0), depth.shape[1] - 1)
            value = float(depth[row, col])
            grasp["depth_m"] = value if value > 0 else None  # 0 = no measurement
    if args.out is not None:
        from langgrasp.detector.visualize import draw_overlay, save_image

        overlay = draw_overlay(
            rgb,
            mask_prob=detection.mask_prob,
            grasps=detection.grasps,
            title=f"{detector.manifest.model}: {detection.command}",
            mask_threshold=detector.decoding.mask_threshold,
        )
        result["overlay"] = str(save_image(args.out, overlay))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']} on {result['provider']} ({result['precision']}): {args.command!r}")
    if detection.reason:
        print(f"no grasp: {detection.reason}")
    for grasp in result["grasps"]:
        depth_text = ""
        if "depth_m" in grasp:
            depth_text = (
                "no depth" if grasp["depth_m"] is None else f"depth {grasp['depth_m']:.3f} m"
            )
            depth_text = f", {depth_text}"
        print(
            f"  #{grasp['rank']}: centre ({grasp['x']:.1f}, {grasp['y']:.1f}) px, angle "
            f"{grasp['angle']:+.3f} rad, opening {grasp['width']:.1f} px, quality "
            f"{grasp['quality']:.3f}{depth_text}"
        )
    timings = detection.timings_ms
    print(
        f"target mask {result['mask_pixels']} px (score {detection.mask_score:.3f}); "
        f"network {timings['network']:.1f} ms, total {timings['total']:.1f} ms"
        + (f"; overlay: {result['overlay']}" if "overlay" in result else "")
    )
    return 0
