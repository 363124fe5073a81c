#!/usr/bin/python3
"""pathotype's `predict --format json`, reimplemented from an exported model alone.

    predict_onnx.py MODEL.onnx IMAGE... [--scale X | --mpp UM]

Reads nothing but MODEL.onnx and its sidecar MODEL.json (`pathotype export MODEL --format onnx`)
and follows the sidecar's `reproduce` section step by step: decoding, the pixel scale, the
resampling (libvips' lanczos3, bit-exact on 8-bit RGB), the normaliser, the input checks, the
patch grid, the network (OpenCV's dnn), the vote and the calibration. Needs only Debian's
python3-numpy, python3-pil and python3-opencv. Prints {"model", "predictions"} as pathotype does;
exits 1 when an image is refused (it is still in the output, with its code).
"""
import argparse
import hashlib
import json
import math
import re
import sys

import cv2
import numpy as np
from PIL import Image, ImageOps

BATCH = 64


def fail(message):
    sys.stderr.write(f"predict_onnx: {message}\n")
    sys.exit(2)


def load_sidecar(model):
    path = re.sub(r"\.onnx$", "", model, flags=re.I) + ".json"
    with open(path, encoding="utf-8") as f:
        sidecar = json.load(f)
    if not str(sidecar.get("format", "")).startswith("pathotype-onnx/1"):
        fail(f"{path} is not a pathotype-onnx/1 sidecar")
    if "reproduce" not in sidecar:
        fail(f"{path} has no 'reproduce' section: export it again with a newer pathotype")
    with open(model, "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() != sidecar["onnx"]["sha256"]:
            fail(f"{model} is not the graph its sidecar describes (SHA-256 differs)")
    return sidecar


class Refused(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- decoding and scale


def open_upright(path):
    image = Image.open(path)
    if image.format not in ("TIFF", "PNG", "JPEG", "WEBP"):
        raise Refused("ERR_UNSUPPORTED_IMAGE", f"{path} is {image.format}; TIFF, PNG, JPEG and WebP are read")
    return image


def upright_size(image):
    orientation = image.getexif().get(274, 1)
    w, h = image.size
    return (h, w) if orientation >= 5 else (w, h)


def decode(image):
    """8-bit RGB, orientation applied, alpha flattened onto white (reproduce.decode)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
        alpha = rgba[..., 3:] / 255.0
        return np.floor(rgba[..., :3] * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def image_scale(width, height, spec, given):
    if given is not None:
        return given
    s = width / spec["originalWidth"]
    return float(f"{s:.4f}") if abs(height / spec["originalHeight"] - s) / s < 0.01 else None


def round_half_up(x):
    return int(math.floor(x + 0.5))


def size_at(width, height, scale, target):
    if target is None:
        return width, height
    f = target / scale
    return max(1, round_half_up(width * f)), max(1, round_half_up(height * f))


# ---------------------------------------------------------------- resampling (reproduce.resize)


def lanczos3(x):
    if x == 0:
        return 1.0
    if x < -3 or x > 3:
        return 0.0
    return 3 * math.sin(math.pi * x) * math.sin(math.pi * x / 3) / (math.pi * math.pi * x * x)


def box_shrink(a, k, axis):
    a = np.moveaxis(a, axis, 0).astype(np.int64)
    n = -(-a.shape[0] // k)
    pad = n * k - a.shape[0]
    if pad:
        a = np.concatenate([a, np.repeat(a[-1:], pad, 0)], 0)
    s = a.reshape((n, k) + a.shape[1:]).sum(1)
    return np.moveaxis((s + k // 2) // k, 0, axis)


def reduce_axis(a, out, axis):
    length = a.shape[axis]
    if out == length:
        return a
    shrink = 1.0 / (1.0 / (length / out))
    extra = out * shrink - length
    k = max(1, int(math.floor(length / out / 2.0)))
    if k > 1:
        a = box_shrink(a, k, axis)
        shrink /= k
        extra /= k
    a = np.moveaxis(a, axis, 0).astype(np.int64)
    size = a.shape[0]
    n = 2 * int(round(3 * shrink)) + 1
    x = (np.arange(out) + 0.5) * shrink - 0.5 - extra / 2 + 0.5
    first = np.floor(x).astype(np.int64)
    phase = ((np.floor(x * 128).astype(np.int64) & 127) + 1) >> 1
    table = {}
    for q in np.unique(phase):
        w = [lanczos3((t - q / 64.0 - n / 2.0 + 1) / shrink) for t in range(n)]
        total = 0.0
        for v in w:
            total += v
        table[int(q)] = np.array([math.trunc(v / total * 4096) for v in w], dtype=np.int64)
    coef = np.stack([table[int(q)] for q in phase])
    acc = np.zeros((out,) + a.shape[1:], dtype=np.int64)
    for t in range(n):
        rows = np.clip(first - n // 2 + t, 0, size - 1)
        acc += coef[:, t].reshape((out,) + (1,) * (a.ndim - 1)) * a[rows]
    return np.moveaxis(np.clip((acc + 2048) >> 12, 0, 255), 0, axis)


def catmull_taps(out, size):
    s = out / size
    x = np.arange(out) / s - 0.5
    first = np.floor(x).astype(np.int64)
    phase = (((np.floor((x - first) * 128).astype(np.int64)) & 127) + 1) >> 1
    f = phase / 64.0
    d = 1.0 - f
    a = -0.5 * d * f
    c0 = a * d
    c1 = d * f * (1.0 - 1.5 * f) + d
    c2 = 1.0 - (a + c1)
    c3 = a * f
    coef = np.trunc(np.stack([c0, c1, c2, c3], 1) * 4096).astype(np.int64)
    index = np.clip(first[:, None] + np.arange(-1, 3)[None, :], 0, size - 1)
    return index, coef


def enlarge(a, width, height):
    a = a.astype(np.int64)
    xi, xc = catmull_taps(width, a.shape[1])
    yi, yc = catmull_taps(height, a.shape[0])
    rows = np.einsum("xk,yxkc->yxc", xc, a[:, xi])
    rows = (rows + 2048) >> 12
    out = np.einsum("yk,ykxc->yxc", yc, rows[yi])
    return np.clip((out + 2048) >> 12, 0, 255)


def resize(rgb, width, height):
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb
    a = rgb
    if height < h:
        a = reduce_axis(a, height, 0)
    if width < w:
        a = reduce_axis(a, width, 1)
    if width > w or height > h:
        a = enlarge(a, width, height)
    return a.astype(np.uint8)


# ---------------------------------------------------------------- measures (reproduce.measures)


def luminance_chroma(rgb):
    f = rgb.astype(np.float64)
    lum = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    chroma = rgb.max(-1).astype(np.int64) - rgb.min(-1).astype(np.int64)
    return lum, chroma


def tissue_stats(rgb, p):
    flat = rgb.reshape(-1, 3)
    step = max(1, flat.shape[0] // p["tissueSamples"])
    sample = flat[::step].astype(np.int64)
    lum, chroma = luminance_chroma(sample)
    glass = (lum > p["glassLuminance"]) & (chroma < p["glassChroma"])
    tissue = ~glass
    r, g, b = sample[:, 0], sample[:, 1], sample[:, 2]
    stained = (g + p["greenMargin"] <= r) & (g + p["greenMargin"] <= b)
    ink = tissue & (chroma >= p["penChroma"]) & ~stained
    n, t = len(sample), int(tissue.sum())
    return {
        "tissueFraction": t / n if n else 0.0,
        "stainFraction": int((stained & tissue).sum()) / t if t else 0.0,
        "inkFraction": int(ink.sum()) / n if n else 0.0,
    }


def optical_density():
    return np.array([-math.log10(max(v, 1) / 255) for v in range(256)])


def focus(rgb, hed_from_rgb):
    if rgb.shape[0] < 3 or rgb.shape[1] < 3:
        return 0.0
    od = optical_density()
    h = (od[rgb[..., 0]] * hed_from_rgb[0][0] + od[rgb[..., 1]] * hed_from_rgb[1][0] + od[rgb[..., 2]] * hed_from_rgb[2][0])
    h = h.astype(np.float32).astype(np.float64)
    lap = h[1:-1, :-2] + h[1:-1, 2:] + h[:-2, 1:-1] + h[2:, 1:-1] - 4 * h[1:-1, 1:-1]
    return float((lap * lap).mean() - lap.mean() ** 2)


def fold_fraction(rgb, p):
    block = p["foldBlock"]
    rows, cols = rgb.shape[0] // block, rgb.shape[1] // block
    if rows == 0 or cols == 0:
        return 0.0
    part = rgb[: rows * block, : cols * block]
    lum, chroma = luminance_chroma(part)
    tissue = ~((lum > p["glassLuminance"]) & (chroma < p["glassChroma"]))
    od = optical_density()[part].sum(-1) * tissue
    shape = (rows, block, cols, block)
    count = tissue.reshape(shape).sum((1, 3))
    total = od.reshape(shape).sum((1, 3))
    keep = count > block * block / 2
    if not keep.any():
        return 0.0
    densities = total[keep] / count[keep]
    middle = np.sort(densities)[len(densities) // 2]
    ratios = densities / middle if middle > 0 else np.zeros_like(densities)
    return float((ratios > p["foldDensityRatio"]).sum() / len(densities))


def artefacts(rgb, p):
    lum, chroma = luminance_chroma(rgb)
    pixels = rgb.shape[0] * rgb.shape[1]
    ink = ((lum < p["inkLuminance"]) & (chroma < p["inkChroma"])).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=4)
    black = float(stats[1:, cv2.CC_STAT_AREA].max() / pixels) if n > 1 else 0.0
    rim = ((lum < p["rimLuminance"]) & (chroma < p["rimChroma"])).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(rim, connectivity=4)
    bubble = 0.0
    for x0, y0, w, h, area in stats[1:]:
        if w < p["minRimSide"] or h < p["minRimSide"]:
            continue
        if w / h > p["maxRimAspect"] or w / h < 1 / p["maxRimAspect"] or area / (w * h) >= p["maxRimFill"]:
            continue
        qx, qy = w // 4, h // 4
        centre = rim[y0 + qy : y0 + h - qy, x0 + qx : x0 + w - qx]
        if centre.size > 0 and centre.sum() / centre.size < p["maxRimCentreShare"]:
            bubble = max(bubble, w * h / pixels)
    return {"blackInkFraction": black, "foldFraction": fold_fraction(rgb, p), "bubbleFraction": bubble}


# ---------------------------------------------------------------- normalisation and tiling


def normalise(rgb, normaliser):
    method = normaliser["method"]
    if method == "none":
        return rgb
    if method == "percentile":
        out = np.empty_like(rgb)
        pixels = rgb.shape[0] * rgb.shape[1]
        for c in range(3):
            cumulative = np.cumsum(np.bincount(rgb[..., c].ravel(), minlength=256))
            bound = lambda pct: int(np.argmax(cumulative >= pct / 100 * pixels)) if cumulative[-1] >= pct / 100 * pixels else 255
            lo, hi = bound(normaliser["low"]), bound(normaliser["high"])
            hi = max(lo + 1, hi)
            lut = np.clip(np.floor((np.arange(256) - lo) * 255 / (hi - lo) + 0.5), 0, 255).astype(np.uint8)
            out[..., c] = lut[rgb[..., c]]
        return out
    fail(f"the '{method}' normaliser is not reimplemented here (src/image/normalise.ts)")


def tile(rgb, tiles, background):
    size, stride = tiles["patchSize"], tiles["stride"]
    h, w = rgb.shape[:2]
    cols = (w - size) // stride + 1 if w >= size else 0
    rows = (h - size) // stride + 1 if h >= size else 0
    patches = []
    for row in range(rows):
        for col in range(cols):
            patch = rgb[row * stride : row * stride + size, col * stride : col * stride + size]
            if background["enabled"]:
                lum, chroma = luminance_chroma(patch)
                glass = (lum > background["brightness"]) & (chroma < background["greyChroma"])
                if glass.mean() > background["maxFraction"]:
                    continue
            patches.append(patch)
    return patches


# ---------------------------------------------------------------- one image


class Checks:
    """The sidecar's checks, in order: each is run as soon as its measure is known."""

    def __init__(self, checks):
        self.pending = list(checks)

    def run(self, values):
        while self.pending and self.pending[0]["measure"] in values:
            check = self.pending.pop(0)
            v = values[check["measure"]]
            if "refusedAbove" in check and v > check["refusedAbove"]:
                raise Refused(check["code"], f"{check['measure']} {v:.4g} is above {check['refusedAbove']}")
            if "refusedBelow" in check and v < check["refusedBelow"]:
                raise Refused(check["code"], f"{check['measure']} {v:.4g} is below {check['refusedBelow']}")


def prepare(path, sidecar, given_scale):
    rep = sidecar["reproduce"]
    params = rep["measures"]["parameters"]
    preprocess = sidecar["preprocess"]
    target = preprocess["targetScale"]
    checks = Checks(rep["checks"])
    image = open_upright(path)
    width, height = upright_size(image)
    checks.run({"filePixels": width * height})
    scale = image_scale(width, height, rep["scale"], given_scale)
    checks.run({"scaleKnown": 0 if target is not None and scale is None else 1})
    checks.run({"enlargement": target / scale if target is not None else 1})
    w, h = size_at(width, height, scale, target)
    size, stride = preprocess["tiles"]["patchSize"], preprocess["tiles"]["stride"]
    cells = ((w - size) // stride + 1 if w >= size else 0) * ((h - size) // stride + 1 if h >= size else 0)
    checks.run({"modelPixels": w * h, "gridCells": cells})
    rgb = resize(decode(image), w, h)
    checks.run(tissue_stats(rgb, params))
    own = target if target is not None else scale
    # Reduced to the judging scale where the model sees finer pixels, never enlarged.
    judged = rgb
    if own is not None and own > params["judgingScale"] + 1e-3:
        f = params["judgingScale"] / own
        judged = resize(rgb, max(3, round_half_up(w * f)), max(3, round_half_up(h * f)))
    checks.run(artefacts(judged, params))
    patches = tile(normalise(rgb, preprocess["normaliser"]), preprocess["tiles"], rep["background"])
    checks.run({"patches": len(patches)})
    checks.run({"focus": focus(judged, np.linalg.inv(np.array(params["rgbFromHed"])))})
    return scale, patches


# ---------------------------------------------------------------- network, vote, verdict


def run_network(net, sidecar, patches):
    layout = sidecar["input"]["layout"]
    names = ["logits", "probabilities"] + (["attention"] if "attention" in sidecar["outputs"] else [])
    outs = {n: [] for n in names}
    for start in range(0, len(patches), BATCH):
        batch = np.stack(patches[start : start + BATCH])
        blob = batch if layout == "uint8-nhwc" else batch.transpose(0, 3, 1, 2).astype(np.float32)
        net.setInput(blob)
        for name, value in zip(names, net.forward(names)):
            outs[name].append(np.array(value, dtype=np.float32).reshape(len(batch), -1))
    return {n: np.concatenate(v) for n, v in outs.items()}


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def log_softmax(logits):
    z = logits.astype(np.float64)
    top = z.max(1, keepdims=True)
    return z - (top + np.log(np.exp(z - top).sum(1, keepdims=True)))


def verdict(outputs, sidecar):
    rule = sidecar["reproduce"]["verdict"]["rule"]
    classes = sidecar["classes"]
    log_p = log_softmax(outputs["logits"])
    probabilities = np.exp(log_p) if rule in ("logit", "attention") else outputs["probabilities"].astype(np.float64)
    count, k = probabilities.shape
    argmax = probabilities.argmax(1)
    votes = np.bincount(argmax, minlength=k) / count
    mean = probabilities.mean(0)
    floor = lambda v: np.log(np.maximum(v, 1e-7))
    tied = [c for c in range(k) if votes[c] == votes.max()]
    by_majority = max(tied, key=lambda c: (mean[c], -c))
    if rule == "majority":
        scores, predicted = floor(votes), by_majority
    elif rule == "mean":
        scores = floor(mean)
        predicted = int(mean.argmax())
    elif rule == "logit":
        scores = log_p.mean(0)
        predicted = int(scores.argmax())
    else:
        weights = softmax(outputs["attention"].astype(np.float64).ravel())
        scores = (weights[:, None] * log_p).sum(0)
        predicted = int(scores.argmax())
    scores = scores - scores.mean()
    calibration = sidecar.get("calibration")
    temperature = calibration["temperature"] if calibration else 1.0
    calibrated = softmax(scores / temperature)
    confidence = float(calibrated.max())
    threshold = calibration["threshold"] if calibration else None
    named = lambda values: {c: round(float(v), 4) for c, v in zip(classes, values)}
    return {
        "status": "uncertain" if threshold is not None and confidence < threshold else "answered",
        "predicted": classes[predicted],
        "confidence": round(confidence, 4),
        "probabilities": named(calibrated),
        "threshold": threshold,
        "rule": rule,
        "byMajority": classes[by_majority],
        "byMean": classes[int(mean.argmax())],
        "voteShares": named(votes),
        "meanProbabilities": named(mean),
        "patches": int(count),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="MODEL.onnx, with MODEL.json beside it")
    parser.add_argument("images", nargs="+")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--scale", type=float, help="the images' pixel scale relative to the 1388x1040 release")
    group.add_argument("--mpp", type=float, help="the images' microns per pixel")
    args = parser.parse_args()
    sidecar = load_sidecar(args.model)
    original_mpp = sidecar["reproduce"]["scale"]["originalMpp"]
    given = args.scale if args.scale is not None else (float(f"{original_mpp / args.mpp:.4g}") if args.mpp else None)
    net = cv2.dnn.readNetFromONNX(args.model)
    predictions, refused = [], False
    for path in args.images:
        try:
            scale, patches = prepare(path, sidecar, given)
            predictions.append({"name": path, **verdict(run_network(net, sidecar, patches), sidecar), "scale": scale})
        except Refused as r:
            refused = True
            predictions.append({"name": path, "status": "refused", "code": r.code, "message": str(r)})
    model = sidecar["model"]
    print(json.dumps({"model": {"name": model["name"], "version": model["version"]}, "predictions": predictions}, indent=2))
    sys.exit(1 if refused else 0)


if __name__ == "__main__":
    main()
