import pytest

pytest.importorskip("matplotlib")

from pipeline.bench.plot import figure, save_plot  # noqa: E402


def fake_report(scale: float) -> dict:
    return {"engine_fps": 100 * scale, "sequential_fps": 40 * scale, "e2e_fps": 70 * scale,
            "latency_ms": {"capture_to_sink": {"p50_ms": 20 / scale, "p95_ms": 30 / scale, "p99_ms": 35 / scale}}}


def test_one_line_per_configuration_on_labelled_axes():
    reports, labels = [fake_report(1), fake_report(2), fake_report(3)], ["batch=1", "batch=2", "batch=4"]
    fig = figure(reports, labels, "title")
    fps_ax, lat_ax = fig.axes
    for ax in (fps_ax, lat_ax):
        assert len(ax.get_lines()) == 3
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == labels
    assert len({tuple(line.get_color()) if not isinstance(line.get_color(), str) else line.get_color() for line in fps_ax.get_lines()}) == 3
    assert list(fps_ax.get_lines()[1].get_ydata()) == [200, 80, 140]
    assert list(lat_ax.get_lines()[0].get_ydata()) == [20, 30, 35]


def test_many_configurations_stay_distinguishable():
    fig = figure([fake_report(1 + i / 10) for i in range(12)], [f"c{i}" for i in range(12)], "t")
    lines = fig.axes[0].get_lines()
    assert len({(str(line.get_color()), line.get_marker()) for line in lines}) == 12


def test_save_plot_writes_a_png_and_no_partial(tmp_path):
    path = save_plot([fake_report(1)], ["one"], tmp_path / "p.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]
