"""Helpers that keep the report fast over thousands of runs without changing a value: lookups of a frame's rows by
key (one groupby, not one boolean mask over the whole frame per lookup), groups as positions into plain arrays (a
group's values are then array slices, not a DataFrame per group), rows as dicts read a column at a time, text columns
as plain objects (a group's slice of an Arrow-backed column is a pyarrow call per column and group), pandas' mode and
median on such arrays, and a column's values as integer codes or JSON texts computed once per distinct value."""
import collections
import json
import math

import numpy as np
import pandas as pd


def first_rows(frame, keys):
    """key → the first row of `frame` (in frame order) with exactly those values of `keys`, as a dict of its cells
    typed as frame.iloc[i] gives them (numpy scalars), or None. A key holding a NaN matches nothing, as `==` would."""
    arrays = {c: frame[c].to_numpy() for c in frame.columns}
    first: dict = {}
    for i, key in enumerate(zip(*(arrays[k] for k in keys))):
        first.setdefault(key, i)

    def lookup(values: tuple):
        i = None if any(pd.isna(v) for v in values) else first.get(tuple(values))
        return None if i is None else {c: a[i] for c, a in arrays.items()}

    return lookup


def records(frame, columns=None) -> list[dict]:
    """The frame's rows as dicts of `columns` (default: all; a column the frame lacks reads None) holding the Python
    values to_dict("records") gives, read a column at a time (to_dict and iterrows build an object per row)."""
    names = list(frame.columns) if columns is None else list(columns)
    values = [frame[c].tolist() if c in frame else [None] * len(frame) for c in names]
    return [dict(zip(names, row)) for row in zip(*values)] if names else [{} for _ in range(len(frame))]


def records_by(frame, keys, columns) -> callable:
    """key → the frame's rows with exactly those values of `keys`, in frame order, as dicts of `columns` (records),
    [] for none: one groupby, not a boolean mask over the whole frame per lookup. A key holding a NaN matches
    nothing."""
    rows, found = records(frame, columns), {}
    for key, at in groups(frame, keys):
        found[key] = [rows[i] for i in at]

    def lookup(values: tuple):
        return [] if any(pd.isna(v) for v in values) else found.get(tuple(values), [])

    return lookup


def plain(frame):
    """The frame with its text columns as plain Python objects: a group's slice of an Arrow-backed string column costs
    a pyarrow call per column and group, which thousands of groups add up to seconds. The values do not change."""
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c].dtype) and frame[c].dtype != object]
    return frame.astype({c: object for c in text}) if text else frame


def groups(frame, keys):
    """(key, positions) per group of `frame` by `keys`, in groupby's sorted order (missing values kept as a key), each
    group's positions in frame order: a group's values are then plain array slices."""
    codes = frame.groupby(keys, sort=True, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.diff(codes[order], prepend=-1))
    values = [frame[k].to_numpy() for k in keys]
    for at in np.split(order, starts[1:]) if len(order) else []:
        yield tuple(v[at[0]] for v in values), at


def mode(values):
    """The most frequent value, the smallest of those tied (pandas' mode(), first)."""
    counts = collections.Counter(v for v in values if not pd.isna(v))
    top = max(counts.values())
    return min(v for v, c in counts.items() if c == top)


def median(values):
    """The median of the values present (Series.median), NaN when none is."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return np.median(values) if len(values) else np.float64(math.nan)


def value_codes(series):
    """Per value an integer, equal exactly when json.dumps of the values is, for a column of one type (numbers,
    booleans, text; a float by its bits: 0.0 and -0.0 differ, every NaN is one); None for other columns."""
    if series.dtype.kind == "f":
        numbers = series.to_numpy(dtype=float)
        return pd.factorize(np.where(np.isnan(numbers), np.nan, numbers).view(np.int64))[0]
    if series.dtype.kind in "iub" or (pd.api.types.is_string_dtype(series.dtype) and series.dtype != object):
        return pd.factorize(series, use_na_sentinel=False)[0]
    return None


def json_text():
    """json.dumps(v, default=str), computed once per distinct value (a sweep's configs repeat a few values)."""
    known: dict = {}

    def text(value) -> str:
        if isinstance(value, float) and value != value:
            return "NaN"
        try:   # the type is part of the key (1, 1.0 and True are one dict key), a float's sign too (0.0, -0.0)
            key = (type(value), value, math.copysign(1.0, value) if isinstance(value, float) else None)
            if key not in known:
                known[key] = json.dumps(value, default=str)
            return known[key]
        except TypeError:   # unhashable: a list or dict
            return json.dumps(value, default=str)

    return text
