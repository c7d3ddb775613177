"""Two helpers that keep the report fast over thousands of runs without changing a value: a lookup of a frame's rows
by key (one groupby, not one boolean mask over the whole frame per lookup), and text columns as plain objects (a
group's slice of an Arrow-backed column is a pyarrow call per column and group)."""
import pandas as pd


def rows_by(frame, keys):
    """key → the frame's rows with exactly those values of `keys`, in frame order: one groupby instead of one mask
    over the whole frame per lookup (a report of thousands of runs makes thousands). A key holding a NaN matches
    nothing, as `==` would not."""
    positions = frame.groupby(keys, sort=False, dropna=False).indices if len(frame) else {}
    empty = frame.iloc[:0]

    def lookup(values: tuple):
        found = positions.get(values[0] if len(values) == 1 else values)
        return empty if found is None or any(pd.isna(v) for v in values) else frame.iloc[found]

    return lookup


def plain(frame):
    """The frame with its text columns as plain Python objects: a group's slice of an Arrow-backed string column costs
    a pyarrow call per column and group, which thousands of groups add up to seconds. The values do not change."""
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c].dtype) and frame[c].dtype != object]
    return frame.astype({c: object for c in text}) if text else frame
