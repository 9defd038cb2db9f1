"""``rtpipe info``: an engine's sidecar as a readable table."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from pipeline.preprocess.host import PAD_VALUE
from pipeline.sidecar import notes, rebuild_command
from pipeline.text import safe
from pipeline.trust import is_recorded
from pipeline.types import EngineMeta, Fit


def padding(fit: Fit) -> str | None:
    """What the input around a fitted frame is filled with, as the preprocessing fills it (None:
    nothing is). The letterbox pads with PAD_VALUE, whatever ``pad_rgb`` says; the torchvision
    fits with ``pad_rgb`` (the normalisation mean)."""
    if fit.mode in ("letterbox", "rect"):
        rgb = (PAD_VALUE,) * 3
    elif fit.mode == "torchvision" or (fit.mode == "shortside" and fit.stride != 1):
        rgb = tuple(round(v * 255) for v in fit.pad_rgb)
    else:  # resize, stretch: nothing to pad; centercrop: cut out of the frame
        return None
    return ("black" if rgb[0] == 0 else f"grey {rgb[0]}") if len(set(rgb)) == 1 else "RGB " + ",".join(map(str, rgb))


def accepts(m: EngineMeta, batch: dict) -> str:
    """The input shapes an engine takes, and how a frame of any size is brought to them."""
    h, w = m.fit.input_hw
    frames = ("batches of any size" if batch["max"] is None else f"batches of {batch['min']}..{batch['max']}"
              if batch["min"] != batch["max"] else f"batches of {batch['max']}")
    pad = padding(m.fit)
    padded = f", padded with {pad}" if pad else ""
    if m.fit.per_frame:
        step = m.fit.stride or 32
        multiples = f" (multiples of {step}){padded}" if step > 1 else ""
        return f"any height and width ({frames}): each frame fitted to its own shape, up to {h}x{w}{multiples}"
    how = {"letterbox": f"letterboxed (aspect kept{padded})", "resize": "stretched", "stretch": "stretched",
           "torchvision": f"resized as torchvision does{padded}", "shortside": f"resized (short side) as torchvision's preset does{padded}",
           "centercrop": "resized (short side) and centre-cropped as torchvision's preset does"}.get(m.fit.mode, m.fit.mode)
    advice = "; build with --imgsz H,W for a camera's shape" if m.family == "yolo" else ""
    return f"3x{h}x{w} only ({frames}): frames of any size are {how} into it{advice}"


def fit_line(fit: Fit) -> str:
    """The fit's settings, with the padding the preprocessing really uses (not an unused ``pad_rgb``)."""
    shown = {k: v for k, v in fit.to_dict().items() if k != "pad_rgb"} | {"pad": padding(fit) or "none"}
    return ", ".join(f"{k} {v}" for k, v in shown.items())


def _what(m: EngineMeta) -> list[tuple[str, str]]:
    names = [safe(n) for n in m.names]
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} classes)" if len(names) > 8 else f" ({len(names)} classes)")
    return [("family", f"{m.family}" + (f" / {m.arch}" if m.arch else "") + f"  task {m.task}" + (f"  layout {m.layout}" if m.layout else "")),
            ("classes", shown)]


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=safe(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for k, v in rows:
        table.add_row(k, v)
    return table


def render_model(name: str, path: Path, m: EngineMeta) -> Table:
    """A model with no sidecar (a builtin that ships as ONNX alone): what its own metadata says."""
    return _table(f"{name} ({path})", [
        *_what(m),
        ("accepts", accepts(m, {"min": m.batch or 1, "max": m.batch or m.batch_max})),
        ("fit", fit_line(m.fit)),
        ("outputs", "  ".join(m.outputs)),
        ("sidecar", f"none: not made by rtpipe build, so how it was built and checked is not recorded (it runs: --model {name})"),
    ])


def render(engine: Path, record: dict, problems: list[str]) -> Table:
    m = EngineMeta.from_dict(record["model"], f"sidecar of {engine}")
    inp = record.get("input", {})
    batch = record["batch"]
    gpu = record.get("gpu")
    rows = [
        ("format", f"{record['format']}  {record['precision']}  ({record['engine_bytes'] / 1e6:.1f} MB)"),
        *_what(m),
        ("accepts", accepts(m, batch)),
        ("input", f"{inp.get('name', 'images')} {inp.get('shape')} {inp.get('dtype', 'float32')} "
                  f"{inp.get('color', 'RGB')} x {inp.get('scale', '1/255')}"),
        ("fit", fit_line(m.fit)),
        ("normalisation", str(inp.get("normalisation"))),
        ("outputs", "  ".join(f"{k} [B, {', '.join(map(str, v))}]" for k, v in record.get("outputs", {}).items())),
        ("batch", f"{batch['max']} (fixed)" if batch["min"] == batch["max"] else f"{batch['min']}..{batch['max']} (opt {batch['opt']})"),
        ("device", record["device"] + (f"  {gpu['name']} (compute capability {gpu['compute_capability']})" if gpu else "")),
        ("checkpoint", f"{safe(record['checkpoint']['path'])}  sha256 {record['checkpoint']['sha256'][:16]}"),
        ("versions", "  ".join(f"{k} {v}" for k, v in record["versions"].items() if v)),
        ("checked", _check_line(record.get("check", {}))),
        ("built", f"{record.get('built_at')} in {record.get('build_seconds')} s"),
        ("rebuild", safe(rebuild_command(record)) if record["format"] == "onnx" or is_recorded(engine)
                    else "(not shown: rtpipe did not build this engine on this account, so its sidecar is not believed)"),
        ("runs here", "yes" if not problems else "no: " + safe("; ".join(problems))),
    ]
    if not problems and (found := notes(record)):
        rows.append(("note", safe("; ".join(found))))
    return _table(str(engine), rows)


def _check_line(check: dict) -> str:
    if not check:
        return "not recorded"
    outputs = check.get("outputs", {}).values()
    line = f"vs {check.get('reference')} on {check.get('samples')} rendered inputs: "
    if any("pixels_differing" in o for o in outputs):  # a class map
        line += f"{max(o['pixels_differing'] for o in outputs):.3%} of pixels of another class"
    else:
        line += f"max |diff|/(1+|ref|) {max((o['max_rel_diff'] for o in outputs), default=0.0):.2g}"
        if check.get("limit_rel") is not None:
            line += f" (limit {check['limit_rel']:g})"
    int8 = check.get("int8")
    if int8:
        rate = int8.get("box_match_rate")
        line += (f"; int8 on {int8['frames']} held-back frames: {'n/a' if rate is None else f'{rate:.0%}'} of reference boxes found, "
                 f"score drift {int8.get('mean_score_drift')}" + (" (loss accepted)" if int8.get("accepted_loss") else ""))
    return line
