from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hyperflow.core.builtins import BUILTINS, make_shapes
from hyperflow.core.loading import load_dataset
from hyperflow.core.targets import infer_task
from hyperflow.errors import UsageError


@pytest.fixture
def mixed_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.normal(5e4, 1e4, n),
            "city": rng.choice(["paris", "oslo", "rome"], n),
            "member": rng.choice([True, False], n),
        }
    )
    frame.loc[::7, "age"] = np.nan
    frame.loc[::11, "city"] = None
    frame["label"] = np.where(frame["income"] > 5e4, "rich", "poor")
    frame["price"] = frame["income"] / 1000 + rng.normal(0, 1, n)
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "name, task, classes",
    [
        ("digits", "classification", 10),
        ("breast_cancer", "classification", 2),
        ("wine", "classification", 3),
        ("diabetes", "regression", None),
        ("shapes", "segmentation", None),
    ],
)
def test_builtins_load_split_and_describe_themselves(name, task, classes):
    d = load_dataset(name, seed=1)
    assert d.task == task and name in BUILTINS
    assert (len(d.classes) if d.classes else None) == classes
    sizes = d.sizes
    total = sum(sizes.values())
    assert abs(sizes["val"] / total - 0.15) < 0.02 and abs(sizes["test"] / total - 0.15) < 0.02
    assert d.X_train.dtype.is_floating_point and d.fingerprint.startswith(f"builtin:{name}")
    assert len(d.X_train) == len(d.y_train)


def test_digits_is_also_an_image():
    assert load_dataset("digits").image_shape == (1, 8, 8)


def test_split_is_seeded_and_stratified():
    a, b, c = load_dataset("digits", seed=3), load_dataset("digits", seed=3), load_dataset("digits", seed=4)
    assert np.array_equal(a.X_train.numpy(), b.X_train.numpy())
    assert not np.array_equal(a.X_train.numpy(), c.X_train.numpy())
    train_share = np.bincount(a.y_train.numpy()) / len(a.y_train)
    val_share = np.bincount(a.y_val.numpy()) / len(a.y_val)
    assert np.abs(train_share - val_share).max() < 0.02


def test_shapes_is_deterministic_with_binary_masks():
    X1, y1 = make_shapes(n=16)
    X2, y2 = make_shapes(n=16)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert set(np.unique(y1)) == {0.0, 1.0} and X1.shape == (16, 1, 32, 32)


def test_csv_classification_with_strings_and_missing_values(mixed_csv: Path):
    d = load_dataset(str(mixed_csv), "label")
    assert d.task == "classification" and d.classes == ["poor", "rich"]
    assert not np.isnan(d.X_train.numpy()).any()
    # 3 numeric (the price column is a feature too) + 3 cities one-hot + member (true/false as 1/0)
    assert d.input_shape == (3 + 3 + 1,)
    assert d.preprocessor.kinds["member"] == "numeric" and d.preprocessor.kinds["city"] == "categorical"
    assert d.fingerprint.startswith("sha256:")


def test_csv_regression_target_is_inferred_and_scaled(mixed_csv: Path):
    d = load_dataset(str(mixed_csv), "price")
    assert d.task == "regression" and d.output_size == 1
    assert abs(float(d.y_train.mean())) < 1e-5 and d.target_std > 1


def test_task_override(mixed_csv: Path, tmp_path: Path):
    frame = pd.read_csv(mixed_csv)
    frame["grade"] = np.arange(len(frame)) % 4  # few-valued integers: classification by default
    path = tmp_path / "g.csv"
    frame.to_csv(path, index=False)
    assert load_dataset(str(path), "grade").task == "classification"
    assert load_dataset(str(path), "grade", task="regression").task == "regression"
    assert infer_task(pd.Series([1.5, 2.5])) == "regression"
    assert infer_task(pd.Series([True, False])) == "classification"


def test_preprocessing_is_fitted_on_the_training_split_only(mixed_csv: Path):
    d = load_dataset(str(mixed_csv), "label")
    scaler = d.preprocessor.transformer.named_transformers_["numeric"][-1]
    frame = pd.read_csv(mixed_csv)
    # income (column 1) has no gaps: scaled on training rows only, it is centred there and nowhere else
    assert not np.isclose(scaler.mean_[1], frame["income"].mean())
    assert np.allclose(d.X_train.numpy()[:, 1].mean(), 0, atol=1e-5)
    assert abs(d.X_test.numpy()[:, 1].mean()) > 1e-3


def test_unknown_categories_at_predict_time_are_ignored(mixed_csv: Path):
    d = load_dataset(str(mixed_csv), "label")
    row = pd.DataFrame({"member": [True], "city": ["tokyo"], "age": [None], "income": ["51000"], "price": [3.0]})
    out = d.preprocessor.transform(row)
    assert out.shape == (1, d.input_shape[0]) and np.isfinite(out).all()


def test_split_column_is_honoured(mixed_csv: Path, tmp_path: Path):
    frame = pd.read_csv(mixed_csv)
    frame["part"] = np.where(np.arange(len(frame)) < 150, "train", np.where(np.arange(len(frame)) < 180, "val", "test"))
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    d = load_dataset(str(path), "label", split_column="part")
    assert d.sizes == {"train": 150, "val": 30, "test": 20}


def test_a_split_column_with_no_test_rows_is_refused_unless_test_size_is_0(mixed_csv: Path, tmp_path: Path):
    frame = pd.read_csv(mixed_csv)
    frame["part"] = np.where(np.arange(len(frame)) < 150, "train", "val")
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(UsageError, match=r"^split_column 'part' marks no rows test: .* or pass test_size=0"):
        load_dataset(str(path), "label", split_column="part")
    assert load_dataset(str(path), "label", split_column="part", test_size=0).sizes == {
        "train": 150,
        "val": 50,
        "test": 0,
    }
    frame["part"] = np.where(np.arange(len(frame)) < 150, "train", "test")
    frame.to_csv(path, index=False)
    with pytest.raises(UsageError, match=r"^split_column 'part' needs rows marked train and val"):
        load_dataset(str(path), "label", split_column="part")


def test_parquet_and_npz(tmp_path: Path, mixed_csv: Path):
    parquet = tmp_path / "p.parquet"
    pd.read_csv(mixed_csv).to_parquet(parquet)
    assert load_dataset(str(parquet), "label").task == "classification"
    X, y = make_shapes(n=40)
    np.savez(tmp_path / "seg.npz", X=X[:, 0], y=y[:, 0])  # no channel axis: one is added
    seg = load_dataset(str(tmp_path / "seg.npz"))
    assert seg.task == "segmentation" and seg.input_shape == (1, 32, 32)
    np.savez(tmp_path / "img.npz", X=X, y=(y.reshape(40, -1).mean(1) > 0.1).astype(int))
    assert load_dataset(str(tmp_path / "img.npz")).task == "classification"
    np.savez(tmp_path / "tab.npz", X=np.random.rand(50, 3), y=np.random.rand(50))
    assert load_dataset(str(tmp_path / "tab.npz")).task == "regression"


@pytest.mark.parametrize(
    "writer, target, fragment",
    [
        (None, "label", "not found"),
        (lambda p: p.write_bytes(b"\x00\xff\xfe garbage \x00\n\x01"), "label", "is a binary file, not a CSV"),
        (lambda p: p.write_text("a,b\n1,2\n3,4\n"), "label", "target column 'label' is not in"),
        (lambda p: p.write_text("a,label\n1,\n3,\n"), "label", "has no values"),
        (lambda p: p.write_text("a,label\n1,x\n3,x\n4,x\n"), "label", "single class"),
        (lambda p: p.write_text("a,label\n1,x\n3,y\n4,x\n"), None, "needs target=<column>"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, writer, target, fragment):
    path = tmp_path / "bad.csv"
    if writer:
        writer(path)
    with pytest.raises(UsageError, match=fragment) as info:
        load_dataset(str(path), target)
    assert "\n" not in str(info.value)


def test_other_bad_inputs(tmp_path: Path):
    with pytest.raises(UsageError, match="unsupported file type"):
        (tmp_path / "x.json").write_text("{}")
        load_dataset(str(tmp_path / "x.json"))
    with pytest.raises(UsageError, match="is a folder"):
        load_dataset(str(tmp_path))
    np.savez(tmp_path / "w.npz", A=np.zeros(3))
    with pytest.raises(UsageError, match="arrays named X and y"):
        load_dataset(str(tmp_path / "w.npz"))
    with pytest.raises(UsageError, match="task=segmentation needs images"):
        load_dataset("wine", task="segmentation")


# ---------------------------------------------------------------------------------------------- arrays

_RNG = np.random.default_rng(0)
_IMAGES, _LABELS = _RNG.random((30, 8, 8)), _RNG.integers(0, 2, 30)
_NAN_IMAGES = _IMAGES.copy()
_NAN_IMAGES[3, 2, 2] = np.nan
BAD_ARRAYS = {  # name: (X, y, task, fragment, seen from the headers alone)
    "small_masks": (
        _IMAGES,
        _RNG.integers(0, 2, (30, 4, 4)),
        None,
        "nor a mask per image of the images' height and width, (30, 8, 8)",
        True,
    ),
    "two_channel_masks": (_IMAGES, _RNG.integers(0, 2, (30, 2, 8, 8)), None, "y has shape (30, 2, 8, 8)", True),
    "masks_for_classes": (
        _IMAGES,
        _RNG.integers(0, 2, (30, 8, 8)),
        "classification",
        "task=classification needs one label per sample, y (30,), but y holds a mask",
        True,
    ),
    "masks_for_values": (_IMAGES, _RNG.integers(0, 2, (30, 8, 8)), "regression", "use task=segmentation", True),
    "labels_for_segmentation": (_IMAGES, _LABELS, "segmentation", "task=segmentation needs a mask per image", True),
    "table_for_segmentation": (_RNG.random((30, 4)), _LABELS, "segmentation", "X is a table (30, 4)", True),
    "two_label_columns": (
        _RNG.random((30, 4)),
        _RNG.integers(0, 2, (30, 2)),
        None,
        "one label or value per sample",
        True,
    ),
    "fewer_labels": (_IMAGES, _LABELS[:20], None, "X has 30 samples but y has 20", True),
    "scalar_x": (np.float64(1.0), _LABELS, None, "X and y must be arrays with one sample per row", True),
    "scalar_y": (_IMAGES, np.int64(1), None, "got X (30, 8, 8) and y ()", True),
    "rank_one_x": (_RNG.random(30), _LABELS, None, "X must be (N, features), (N, H, W) or (N, C, H, W)", True),
    "empty": (np.zeros((0, 8, 8)), np.zeros(0), None, "hold no samples", True),
    "empty_dimension": (np.zeros((30, 0, 8)), _LABELS, None, "X has an empty dimension", True),
    "text_x": (np.array([["a", "b"]] * 30), _LABELS, None, "X must hold numbers, but its dtype is <U1", True),
    "complex_x": (_RNG.random((30, 4)) + 1j, _LABELS, None, "X must hold numbers, but its dtype is complex128", True),
    "text_masks": (_IMAGES, np.full((30, 8, 8), "a"), None, "masks must be binary numbers", True),
    "nan_pixels": (
        _NAN_IMAGES,
        _LABELS,
        None,
        "X holds values that are not finite float32 numbers (NaN, inf or "
        "beyond ±3.4e38) in 1 of 30 samples (e.g. sample 3",
        False,
    ),
    "huge_pixels": (_IMAGES * 1e39, _LABELS, None, "in 30 of 30 samples", False),
    "text_values": (_IMAGES, np.array(["a", "b"] * 15), "regression", "task=regression needs numbers in y", False),
    "infinite_values": (_IMAGES, np.r_[np.inf, _RNG.random(29)], "regression", "holds inf/-inf in 1 rows", False),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_arrays_that_do_not_fit_are_one_line(tmp_path: Path, case: str):
    """Every mismatch of X and y (shapes, ranks, lengths, types, values) is a one-line UsageError; those of
    shape and type already from the file's headers, before torch is imported."""
    from hyperflow.core.table_files import precheck

    X, y, task, fragment, from_headers = BAD_ARRAYS[case]
    path = tmp_path / f"{case}.npz"
    np.savez(path, X=X, y=y)
    with pytest.raises(UsageError) as info:
        load_dataset(str(path), task=task)
    assert fragment in str(info.value) and "\n" not in str(info.value), info.value
    if from_headers:
        with pytest.raises(UsageError) as early:
            precheck(str(path), None, BUILTINS, task)
        assert str(early.value) == str(info.value)
    else:
        precheck(str(path), None, BUILTINS, task)


def test_samples_without_a_label_are_dropped_as_rows_without_a_target_are(tmp_path: Path, caplog):
    labels = _LABELS.astype(float)
    labels[[0, 5]] = np.nan
    np.savez(tmp_path / "a.npz", X=_IMAGES, y=labels)
    np.savez(tmp_path / "b.npz", X=_RNG.random((30, 4)), y=labels)
    for name in ("a", "b"):
        data = load_dataset(str(tmp_path / f"{name}.npz"))
        assert data.task == "classification" and data.classes == [0, 1] and sum(data.sizes.values()) == 28
    assert "dropping 2 samples whose y is missing" in caplog.text


def test_train_refuses_masks_that_do_not_fit_before_any_run(tmp_path: Path, experiment: str, capsys):
    import time

    import mlflow

    from hyperflow.cli import main

    np.savez(tmp_path / "masks.npz", X=np.zeros((50, 8, 8)), y=np.zeros((50, 4, 4)))
    started = time.monotonic()
    code = main(["train", f"data={tmp_path / 'masks.npz'}", "epochs=1", f"experiment={experiment}"])
    seconds = time.monotonic() - started
    err = capsys.readouterr().err.strip()
    assert code == 2 and "y has shape (50, 4, 4)" in err and len(err.splitlines()) == 1, err
    assert seconds < 10, seconds
    found = mlflow.get_experiment_by_name(experiment)
    assert found is None or mlflow.search_runs([found.experiment_id], output_format="list") == []
