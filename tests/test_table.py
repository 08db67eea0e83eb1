"""A table of one's own as a data set (ggda.data.load_table): one-hot categories fitted on the training
part, median imputation, a seeded split or a test file, and errors naming the column or file."""

import numpy as np
import pandas as pd
import pytest

import ggda
from ggda.data import DataError, FormatError, load_table
from ggda.data.table import read_table_raw
from ggda.data.table_format import encoded_shape


def clinic(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A table with a categorical column (some values missing), numbers with missing values and a boolean."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.normal(50, 10, n).round(1), "city": rng.choice(["north", "south", "east"], n),
                       "dose": rng.normal(0, 1, n), "smoker": rng.choice([True, False], n)})
    df.loc[rng.choice(n, 15, replace=False), "dose"] = np.nan
    df.loc[rng.choice(n, 8, replace=False), "city"] = None
    df["outcome"] = np.where(df["age"] + 8 * (df["city"] == "north") > 52, "ill", "well")
    return df


def test_a_csv_becomes_a_standardised_tabular_bundle(tmp_path):
    df = clinic()
    df.to_csv(tmp_path / "clinic.csv", index=False)
    b = load_table(tmp_path / "clinic.csv", "outcome", split_seed=3)
    assert b.name == "clinic" and b.kind == "tabular" and b.class_names == ["ill", "well"]
    assert (len(b.train), len(b.test)) == (160, 40)
    assert b.feature_names == ["age", "city=east", "city=north", "city=south", "dose", "smoker=False", "smoker=True"]
    x = b.train.tensors[0].numpy()
    assert np.isfinite(x).all() and np.allclose(x.mean(0), 0, atol=1e-5)
    # a row with a missing city sets none of the city columns (before scaling)
    raw = read_table_raw(tmp_path / "clinic.csv", "outcome", split_seed=3)
    city = raw.x_train[:, 1:4]
    assert set(city.sum(1)) == {0.0, 1.0} and (city.sum(1) == 0).sum() > 0
    # the missing doses are imputed with the training median: after scaling they share one value
    missing = np.isnan(raw.x_train[:, 4])
    assert missing.any() and np.ptp(x[missing, 4]) == 0
    # same seed, same split; another seed, another split; stratified by the label
    assert np.array_equal(load_table(tmp_path / "clinic.csv", "outcome", split_seed=3).train.tensors[0].numpy(), x)
    assert not np.array_equal(load_table(tmp_path / "clinic.csv", "outcome", split_seed=4).train.tensors[0].numpy(), x)
    share_well = (df["outcome"] == "well").mean()
    assert abs(b.test.tensors[1].numpy().mean() - share_well) < 0.05


def test_a_test_file_and_chosen_columns(tmp_path):
    df = clinic(240)
    df.iloc[:200].to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    df.iloc[200:].to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    b = load_table(tmp_path / "train.tsv", "outcome", features=["age", "city"], test=tmp_path / "test.tsv",
                   name="mine", n_train=100, noise_rate=0.1, seed=1)
    assert b.name == "mine" and (len(b.train), len(b.test)) == (100, 40) and len(b.flipped) == 10
    assert b.feature_names == ["age", "city=east", "city=north", "city=south"]
    run = ggda.train.fit("lr", b, seed=0, progress=False)
    assert 0.5 < run.test_acc <= 1.0


@pytest.mark.parametrize("change,message", [
    (dict(label="diagnosis"), r"column\(s\) \['diagnosis'\] not in .*clinic.csv \(its columns: age, city"),
    (dict(features=["age", "weight"]), r"\['weight'\] not in"),
    (dict(categorical=["outcome"]), r"categorical: \['outcome'\] are not feature columns"),
    (dict(categorical=[]), r"column 'city' holds non-numbers .* list it under categorical"),
    (dict(test_fraction=1.5), r"test_fraction must be in \(0, 1\)"),
])
def test_errors_name_the_column_or_argument(tmp_path, change, message):
    clinic().to_csv(tmp_path / "clinic.csv", index=False)
    with pytest.raises(DataError, match=message):
        load_table(tmp_path / "clinic.csv", **{"label": "outcome", **change})


def test_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"path: .*absent.csv does not exist"):
        load_table(tmp_path / "absent.csv", "y")
    (tmp_path / "notes.txt").write_text("a,b\n")
    with pytest.raises(DataError, match=r"not a .csv, .tsv or .parquet file"):
        load_table(tmp_path / "notes.txt", "y")
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "a", "a", "a"]}).to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DataError, match="single class"):
        load_table(tmp_path / "one.csv", "y", test_fraction=0.25)


def test_a_parquet_table_loads_as_its_csv_does(tmp_path):
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow: pip install -e '.[parquet]'")
    df = clinic()
    df.to_csv(tmp_path / "clinic.csv", index=False)
    df.to_parquet(tmp_path / "clinic.parquet", index=False)
    from_csv = load_table(tmp_path / "clinic.csv", "outcome", split_seed=3)
    from_parquet = load_table(tmp_path / "clinic.parquet", "outcome", split_seed=3)
    assert from_parquet.feature_names == from_csv.feature_names and from_parquet.class_names == from_csv.class_names
    for part in ("train", "test"):
        for a, b in zip(getattr(from_parquet, part).tensors, getattr(from_csv, part).tensors):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)
    (tmp_path / "broken.parquet").write_bytes((tmp_path / "clinic.parquet").read_bytes()[:100])
    with pytest.raises(FormatError, match=r"path: .*broken.parquet could not be parsed as a table"):
        load_table(tmp_path / "broken.parquet", "outcome")


def test_a_parquet_table_without_an_engine_names_the_file_and_the_fix(tmp_path, monkeypatch):
    (tmp_path / "clinic.parquet").write_bytes(b"PAR1")

    def no_engine(*args, **kwargs):
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    with pytest.raises(DataError, match=r"path: reading .*clinic.parquet needs a Parquet engine: pip install pyarrow"):
        load_table(tmp_path / "clinic.parquet", "outcome")


def three_class_clinic(n: int = 300) -> pd.DataFrame:
    """clinic() with a numeric code column (one number unless named categorical) and three classes."""
    df = clinic(n)
    rng = np.random.default_rng(1)
    df["ward"] = rng.choice([1, 2, 3, 4], n)
    df["outcome"] = rng.choice(["ill", "well", "unknown"], n)
    return df


def _shape(bundle) -> tuple[int, int, int]:
    return len(bundle.train), bundle.train.tensors[0].shape[1], bundle.num_classes


@pytest.mark.parametrize("options", [
    {},
    {"features": ["age", "city", "ward"]},
    {"categorical": ["city", "ward"]},
    {"test_fraction": 0.3},
    {"test": "test"},
])
@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_encoded_shape_is_what_load_table_makes_of_the_table(tmp_path, options, suffix):
    df, sep = three_class_clinic(), "," if suffix == ".csv" else "\t"
    path = tmp_path / f"own{suffix}"
    df.iloc[:241].to_csv(path, sep=sep, index=False)  # 241 rows: the split rounds its test part up
    if options.get("test"):
        options = {**options, "test": str(tmp_path / f"test{suffix}")}
        df.iloc[241:].to_csv(options["test"], sep=sep, index=False)
    assert encoded_shape(path, "outcome", **options) == _shape(load_table(path, "outcome", **options))


def test_encoded_shape_of_a_table_with_a_byte_order_mark(tmp_path):
    path, df = tmp_path / "excel.csv", three_class_clinic()
    df[["outcome", *df.columns.drop("outcome")]].to_csv(path, index=False, encoding="utf-8-sig")
    bundle = load_table(path, "outcome")  # the BOM sits before the first column's name, the label's
    assert encoded_shape(path, "outcome") == _shape(bundle) and bundle.num_classes == 3


def test_encoded_shape_of_a_parquet_table(tmp_path):
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow: pip install -e '.[parquet]'")
    three_class_clinic().to_parquet(tmp_path / "own.parquet", index=False)
    assert encoded_shape(tmp_path / "own.parquet", "outcome") == _shape(load_table(tmp_path / "own.parquet", "outcome"))


def test_encoded_shape_of_an_unreadable_table_is_none(tmp_path):
    three_class_clinic().to_csv(tmp_path / "own.csv", index=False)
    assert encoded_shape(tmp_path / "own.csv", "no-such-label") is None
    assert encoded_shape(tmp_path / "own.csv", "outcome", features=["no-such-column"]) is None
    assert encoded_shape(tmp_path / "own.csv", "outcome", features=["age"], categorical=["city"]) is None
    assert encoded_shape(tmp_path / "missing.csv", "outcome") is None
    (tmp_path / "broken.parquet").write_bytes(b"PAR1")  # no engine, or not Parquet
    assert encoded_shape(tmp_path / "broken.parquet", "outcome") is None
    (tmp_path / "notes.txt").write_text("outcome\n1\n")
    assert encoded_shape(tmp_path / "notes.txt", "outcome") is None
