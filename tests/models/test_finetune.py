"""Transfer learning for a crop classifier: a head fine-tuned on generated car crops (by colour)
over a frozen base beats chance by a wide margin on crops of clips it never saw."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from pipeline.cli import main  # noqa: E402
from pipeline.demo.crops import car_crops, write_crops  # noqa: E402
from pipeline.loader import load_model  # noqa: E402
from pipeline.models.finetune import finetune, read_folder, save  # noqa: E402


def test_a_head_finetuned_on_demo_crops_beats_chance_on_held_back_clips(tmp_path):
    counts = write_crops(tmp_path / "train", list(range(12)), 150)
    assert min(counts.values()) >= 10, counts
    result = finetune(tmp_path / "train", "resnet18")  # a seeded random base: no pretrained weights here
    path = save(result, tmp_path / "head.pth")
    model = load_model("torchvision:resnet18", weights=path)  # as --classify-crops loads it
    assert model.info.names == ("blue", "green", "red")
    held = [c for seed in range(12, 16) for c in car_crops(seed, 150)]  # other clips: other cars
    predicted = np.array([lab.labels.class_id[0] for lab in model.predict([crop for crop, _ in held])])
    truth = np.array([model.info.names.index(colour) for _, colour in held])
    recall = [float((predicted[truth == k] == k).mean()) for k in range(3) if (truth == k).any()]
    balanced = float(np.mean(recall))
    assert len(held) >= 30 and balanced >= 0.7, f"balanced accuracy {balanced:.2f} on {len(held)} held-back crops (chance 0.33)"


def test_the_cli_writes_a_head_and_bad_folders_are_one_line(tmp_path, capsys):
    write_crops(tmp_path / "crops", [0, 1, 2], 60)
    assert main(["finetune", str(tmp_path / "crops"), "-o", str(tmp_path / "h.pth"), "--quiet"]) == 0
    classes = tuple(sorted(p.name for p in (tmp_path / "crops").iterdir()))
    assert len(classes) >= 2 and load_model("torchvision:resnet18", weights=tmp_path / "h.pth").info.names == classes
    assert main(["finetune", str(tmp_path / "crops"), "-o", str(tmp_path / "h.pth")]) == 2  # exists: needs --overwrite
    (tmp_path / "one" / "a").mkdir(parents=True)
    assert main(["finetune", str(tmp_path / "one"), "-o", str(tmp_path / "x.pth")]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "one sub-folder of images per class" in err
    with pytest.raises(ValueError, match="has no images"):
        (tmp_path / "one" / "b").mkdir()
        read_folder(tmp_path / "one")
