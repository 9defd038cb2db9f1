from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import ConfigError, build_config, known_keys, read_preset

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    p = tmp_path / "preset.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("confidence: 0.3\n", "unknown key 'confidence': did you mean 'conf'?"),
        ("iuo: 0.3\n", "did you mean 'iou'?"),
        ("bach: 2\n", "did you mean 'batch'?"),
        ("zzz: 1\n", "known keys:"),
        ("iou: 1.5\n", "key 'iou': Input should be less than or equal to 1"),
        ("batch: two\n", "key 'batch': Input should be a valid integer"),
        ("batch: 0\n", "key 'batch'"),
        ("serve: 'localhost:99999'\n", "key 'serve'"),
        ("backend: tensorrtx\n", "key 'backend'"),
        ("- a\n- b\n", "must be a mapping"),
        ("conf: [\n", "not valid YAML at line"),
    ],
)
def test_preset_errors_are_one_line_with_file_and_key(tmp_path, yaml_text, message):
    p = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as e:
        build_config(p)
    text = str(e.value)
    assert message in text and "\n" not in text
    assert str(p) in text


def test_missing_preset():
    with pytest.raises(ConfigError, match="config file 'nope.yaml' not found"):
        build_config("nope.yaml")


def test_command_line_overrides_preset(tmp_path):
    p = write(tmp_path, "conf: 0.4\nbatch: 2\njson: a.jsonl\nmax-det: 5\n")
    cfg = build_config(p, {"conf": 0.6, "batch": None, "iou": None})
    assert cfg.conf == 0.6 and cfg.batch == 2 and cfg.json_path == Path("a.jsonl") and cfg.max_det == 5
    with pytest.raises(ConfigError, match="command line: key 'iou'"):
        build_config(p, {"iou": 2.0})


def test_a_setting_given_as_a_flag_is_named_by_its_flag_one_from_a_preset_by_its_key(tmp_path):
    flags = {"conf": "--conf", "max_det": "--max-det", "iou": "--iou"}
    with pytest.raises(ConfigError) as e:
        build_config(None, {"conf": 2.0, "iou": None}, flags=flags)
    assert str(e.value) == "--conf: Input should be less than or equal to 1 (got 2.0)"
    with pytest.raises(ConfigError, match=r"^--max-det: Input should be greater than or equal to 1 \(got 0\)$"):
        build_config(write(tmp_path, "conf: 0.5\n"), {"max_det": 0}, flags=flags)
    p = write(tmp_path, "conf: 2\n")
    with pytest.raises(ConfigError) as e:
        build_config(p, {"iou": 0.5}, flags=flags)
    assert str(e.value).startswith(f"{p}: key 'conf': ") and "--conf" not in str(e.value)


def test_values_are_never_evaluated(tmp_path):
    p = write(tmp_path, "model: \"__import__('os').system('touch pwned')\"\n")
    cfg = build_config(p)
    assert cfg.model.startswith("__import__") and not Path("pwned").exists()
    with pytest.raises(ConfigError):
        read_preset(write(tmp_path, "conf: !!python/object/apply:os.system ['true']\n"))


@pytest.mark.parametrize("serve, addr", [("8080", ("127.0.0.1", 8080)), ("0.0.0.0:9000", ("0.0.0.0", 9000)),
                                         ("[::1]:81", ("::1", 81))])
def test_serve_address(serve, addr):
    assert build_config(None, {"serve": serve}).serve_address() == addr


@pytest.mark.parametrize("preset", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_presets_are_valid(preset):
    build_config(preset).check_tracking()


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=20),
                   st.lists(st.integers(-5, 100), max_size=4), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@settings(max_examples=200, deadline=None)
@given(values=st.dictionaries(st.one_of(st.sampled_from(known_keys()), st.text(min_size=1, max_size=12)), VALUES, max_size=6))
def test_fuzzed_settings_validate_or_fail_in_one_line(values):
    try:
        cfg = build_config(None, values)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("command line: ")
    else:
        assert 0 <= cfg.conf <= 1 and 0 <= cfg.iou <= 1 and cfg.batch >= 1 and cfg.reconnect >= 0


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_fuzzed_preset_files_never_escape_as_other_errors(tmp_path, text):
    p = tmp_path / "fuzz.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        build_config(p)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("settings, tracker", [
    ({}, None), ({"lines": ["0,0.5,1,0.5"]}, "botsort"), ({"events": "e.jsonl"}, "botsort"), ({"trails": 10}, "botsort"),
    ({"track": "bytetrack"}, "bytetrack"), ({"track": "none"}, None), ({"track_settings": {"lost_track_buffer": 60}}, "botsort")])
def test_a_tracker_runs_when_asked_or_when_counting_needs_one(settings, tracker):
    cfg = build_config(None, settings)
    cfg.check_tracking()
    assert cfg.tracker == tracker


@pytest.mark.parametrize("settings, message", [
    ({"track": "none", "lines": ["0,0.5,1,0.5"]}, "needs a tracker: drop --track none, or the line"),
    ({"track_settings": {"lost_track_buffer": 60}, "track": "none"}, "track_settings .given on the command line or in a preset. needs"),
    ({"track": "sort"}, "tracker 'sort': choose one of"),
    ({"track": "bytetrack", "track_settings": {"lost": 3}}, "unknown key 'lost' for bytetrack"),
    ({"zones": ["0,0,1,0"]}, "--zone '0,0,1,0': give"),
])
def test_bad_tracking_settings_are_one_line(settings, message):
    with pytest.raises(ConfigError, match=message):
        build_config(None, settings).check_tracking()


def test_an_unquoted_yaml_line_gets_a_hint(tmp_path):
    with pytest.raises(ConfigError, match="quote each one"):
        build_config(write(tmp_path, "lines: [g=0,0.6,1,0.6]\n"))


@pytest.mark.parametrize("key", ["trust_checkpoint", "trust-checkpoint", "trust_engine", "overwrite"])
def test_a_preset_cannot_grant_trust(tmp_path, key):
    preset = tmp_path / "shared.yaml"
    preset.write_text(f"model: someone-elses.pt\n{key}: true\n")
    with pytest.raises(ConfigError, match=r"cannot be set in a preset: give --(trust-checkpoint|trust-engine|overwrite) on the command line"):
        build_config(preset, {})
    assert build_config(None, {"trust_checkpoint": True}).trust_checkpoint  # the command line can


@pytest.mark.parametrize("given, want", [("640", 640), ("384,640", (384, 640)), ("384x640", (384, 640)), ([384, 640], (384, 640)),
                                         ("640,640", 640), (320, 320)])
def test_an_input_size_is_n_or_h_w(given, want):
    assert build_config(None, {"imgsz": given}).imgsz == want


@pytest.mark.parametrize("given", ["abc", "384,640,3", "16", "384,99999", "1.5", [384]])
def test_a_bad_input_size_is_one_line(given):
    with pytest.raises(ConfigError, match="imgsz") as e:
        build_config(None, {"imgsz": given})
    assert "\n" not in str(e.value)


CAL = "0.3,0.6,0.7,0.6,0.9,1,0.1,1=0,30,3.5,30,3.5,5,0,5"


@pytest.mark.parametrize("settings, tracker, message", [
    ({"calibrate": CAL}, "botsort", None),
    ({"calibrate": CAL, "track": "bytetrack"}, "bytetrack", None),
    ({"calibrate": CAL, "track": "none"}, None, "--calibrate .given on the command line or in a preset. needs a tracker"),
    ({"calibrate": "0,0,1,1,2,2,0,1=0,0,1,0,1,1,0,1"}, "botsort", "--calibrate .*three of the picture points lie on one line"),
    ({"heatmap": "heat.png"}, None, None),  # a heatmap alone needs no tracker: it takes every detection
    ({"reid": "hist"}, "botsort", None),
    ({"reid": "hist", "track": "bytetrack"}, "bytetrack", None),
    ({"reid": "hist", "track": "none"}, None, "--reid .given on the command line or in a preset. needs a tracker"),
    ({"reid": "resnet"}, "botsort", "--reid 'resnet': choose one of hist"),
    ({"smooth_boxes": True}, "botsort", None),
    ({"smooth_boxes": True, "track": "none"}, None, "--smooth-boxes .given on the command line or in a preset. needs a tracker"),
])
def test_what_needs_a_tracker_turns_one_on_and_a_heatmap_does_not(settings, tracker, message):
    cfg = build_config(None, settings)
    assert cfg.tracker == tracker
    if message is None:
        cfg.check_tracking()
    else:
        with pytest.raises(ConfigError, match=message):
            cfg.check_tracking()


def test_calibrate_and_heatmap_come_from_a_preset_too(tmp_path):
    cfg = build_config(write(tmp_path, f"calibrate: {CAL}\nheatmap: out/heat.png\n"))
    assert cfg.calibrate == CAL and cfg.heatmap == Path("out/heat.png")
    with pytest.raises(ConfigError, match=r"--heatmap: 'heat.jpg' is not a .png name: give PATH.png"):
        build_config(None, {"heatmap": "heat.jpg"}, flags={"heatmap": "--heatmap"})
