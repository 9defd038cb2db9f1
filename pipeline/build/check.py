"""The builder's self-checks: an engine is kept only if it computes what its checkpoint computes.

- Raw outputs (every precision): the engine and the reference on the same sample inputs; the
  largest elementwise |engine - reference| / (1 + |reference|) per output (relative for
  large values such as box pixels, absolute for scores) must stay under the precision's
  limit. A wrong export wrapper (a traced Python value, a baked branch) fails here. Top-k
  rows (NMS-free layouts) are compared row to nearest row: near-equal scores may swap places
  between runtimes, and rows at the top-k cut-off may give way to others.
- Class maps (semantic models): the share of pixels whose class differs (near-equal class
  scores may flip between runtimes) must stay under the precision's limit.
- Detections (INT8): both decoded on held-back calibration frames; the share of reference
  boxes the engine finds again (same class, IoU >= 0.5) and the mean score drift of those.
"""

from __future__ import annotations

import numpy as np

from pipeline.build.options import CheckFailed
from pipeline.types import EngineMeta

# largest |engine - reference| / (1 + |reference|) per output
RELATIVE_LIMIT = {"fp32": 1e-3, "fp16": 2e-2}
CLASS_MAP_LIMIT = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}  # share of pixels of another class
INT8_MIN_MATCH = 0.90  # share of reference detections found again
INT8_MAX_DRIFT = 0.05  # mean |score difference| of the matched ones


def reference_runner(graph):
    """The reference: the PyTorch module in eager mode on the CPU, or the source ONNX on ONNX Runtime."""
    if graph.module is None:
        from pipeline.backends.onnxruntime import OnnxRuntimeBackend

        return (graph.cpu_backend or OnnxRuntimeBackend(graph.onnx)).infer
    from pipeline.backends.torch import TorchBackend

    return TorchBackend(graph.module, graph.meta.fit.input_hw, graph.meta.outputs, None, "cpu").infer


TOPK_LAYOUTS = ("end2end", "rtdetr-topk")  # output0 rows are a top-k, in score order (score in column 4)


def align_rows(ref: np.ndarray, out: np.ndarray, tol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, C) top-k rows -> (reference rows, the engine's nearest row to each), without the
    reference rows whose score is within ``tol`` of the cut-off (the K-th score)."""
    refs, outs = [], []
    for r, o in zip(ref.astype(np.float64), out.astype(np.float64)):
        dist = (np.abs(r[:, None, :] - o[None, :, :]) / (1 + np.abs(r[:, None, :]))).max(-1)
        keep = r[:, 4] > r[:, 4].min() + tol
        refs.append(r[keep])
        outs.append(o[dist.argmin(1)[keep]])
    return np.concatenate(refs), np.concatenate(outs)


def compare_outputs(expected: list[dict], results: list[dict], precision: str, label: str, fmt: str, layout: str = "dense") -> dict:
    """Per output: the largest absolute and relative difference over all samples; raises
    CheckFailed when one is over the limit (INT8 is judged on detections instead)."""
    report: dict = {"reference": "PyTorch eager (CPU)", "samples": sum(len(next(iter(e.values()))) for e in expected), "outputs": {}}
    limit = RELATIVE_LIMIT.get(precision)
    for exp, got in zip(expected, results):
        for name, ref in exp.items():
            if name not in got:
                raise CheckFailed(f"{label}: the {fmt} engine has no output '{name}' (it has {list(got)}): "
                                  "the export wrapper is wrong")
            out = got[name]
            if out.shape != ref.shape:
                raise CheckFailed(f"{label}: the {fmt} engine's output '{name}' has shape {list(out.shape)}, "
                                  f"the checkpoint gives {list(ref.shape)}")
            if name == "class_map":
                share = float((out != ref).mean()) if ref.size else 0.0
                prev = report["outputs"].get(name, {"pixels_differing": 0.0})
                report["outputs"][name] = {"pixels_differing": max(share, prev["pixels_differing"])}
                continue
            if name == "output0" and layout in TOPK_LAYOUTS and ref.ndim == 3:
                ref, out = align_rows(ref, out)
            err = np.abs(out.astype(np.float64) - ref)
            diff = float(err.max()) if ref.size else 0.0
            rel = float((err / (1 + np.abs(ref))).max()) if ref.size else 0.0
            prev = report["outputs"].get(name, {"max_abs_diff": 0.0, "max_rel_diff": 0.0})
            report["outputs"][name] = {"max_abs_diff": max(diff, prev["max_abs_diff"]), "max_rel_diff": max(rel, prev["max_rel_diff"])}
    report["limit_rel"] = limit
    for name, r in report["outputs"].items():
        if "pixels_differing" in r:
            if not r["pixels_differing"] <= CLASS_MAP_LIMIT[precision]:
                raise CheckFailed(f"{label}: the exported {fmt} graph does not match its checkpoint: {r['pixels_differing']:.2%} of "
                                  f"'{name}' pixels have another class ({precision} allows {CLASS_MAP_LIMIT[precision]:.2%}) on rendered "
                                  "sample inputs; no engine was written")
            continue
        if limit is not None and not r["max_rel_diff"] <= limit:
            raise CheckFailed(
                f"{label}: the exported {fmt} graph does not match its checkpoint: output '{name}' differs by {r['max_abs_diff']:.4g} "
                f"(|diff| / (1 + |value|) up to {r['max_rel_diff']:.3g}; {precision} allows {limit:g}) on rendered sample inputs; "
                "the export wrapper is wrong (a Python value or branch baked in while tracing?); no engine was written"
            )
    return report


def int8_report(reference, runner, meta: EngineMeta, options, held: list[np.ndarray], say) -> dict:
    """Compare the INT8 engine's detections with the reference's on the held-back frames
    ``held``; raises CheckFailed over the limits unless ``options.accept_accuracy_loss``."""
    from pipeline.models import FAMILIES
    from pipeline.models.decoder import DecodeSettings
    from pipeline.ops import box_iou
    from pipeline.preprocess.host import prepare

    say(f"comparing INT8 with the reference on {len(held)} held-back frames")
    fit = meta.fit
    decode = FAMILIES[meta.family].decoder(meta, DecodeSettings())
    tensors, transforms = zip(*(prepare(f, fit) for f in held))
    batch = np.stack(tensors)
    ref = decode(_chunked(reference, batch, options), list(transforms))
    got = decode(_chunked(runner, batch, options), list(transforms))
    total = matched = 0
    drift = []
    for r, g in zip(ref, got):
        total += len(r)
        if not len(r) or not len(g):
            continue
        iou = box_iou(r.xyxy, g.xyxy) * (r.class_id[:, None] == g.class_id[None, :])
        free = np.ones(len(g), bool)
        for i in np.argsort(-r.confidence):  # greedy, most confident reference first
            cand = np.where(free, iou[i], -1.0)
            j = int(cand.argmax())
            if cand[j] >= 0.5:
                free[j] = False
                matched += 1
                drift.append(abs(float(r.confidence[i] - g.confidence[j])))
    report = {"frames": len(held), "reference_detections": total,
              "engine_detections": int(sum(len(g) for g in got)),
              "box_match_rate": matched / total if total else None, "mean_score_drift": float(np.mean(drift)) if drift else None,
              "limits": {"min_match": INT8_MIN_MATCH, "max_drift": INT8_MAX_DRIFT}, "accepted_loss": False}
    if total == 0:
        problem = ("the reference finds nothing on the held-back frames, so accuracy cannot be compared "
                   "(calibrate on frames like the deployment's)")
    elif report["box_match_rate"] < INT8_MIN_MATCH or (report["mean_score_drift"] or 0.0) > INT8_MAX_DRIFT:
        problem = (f"INT8 finds {report['box_match_rate']:.0%} of the reference detections (limit {INT8_MIN_MATCH:.0%}) "
                   f"with mean score drift {report['mean_score_drift'] or 0:.3f} (limit {INT8_MAX_DRIFT})")
    else:
        return report
    if not options.accept_accuracy_loss:
        raise CheckFailed(f"INT8 accuracy check failed: {problem}; use fp16, calibrate on more representative frames, "
                         "or pass --accept-accuracy-loss to keep it anyway")
    say(f"warning: {problem}; kept because of --accept-accuracy-loss")
    report["accepted_loss"] = True
    return report


def _chunked(run, batch: np.ndarray, options) -> dict:
    """Run at the engine's batch sizes: chunks of max, the last padded for a fixed-batch engine."""
    from pipeline.backends import run_in_chunks

    return run_in_chunks(run, batch, options.batch.max, exact=options.batch.fixed)
