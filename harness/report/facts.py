"""What the report knows about a task or a method, each read from the one place it is written (no copies kept here):

- a task's label, headline metric, dataset (what records call `task_family`) and table layout (its `report` block):
  the shipped task yaml (harness/conf/task/, through harness.catalog), else the record's own `config.task` (a user's
  task), else defaults;
- a method's size parameter (LoRA's r, a prefix's l_p, FT^Top2's top) and the defaults of
  settings added after its records existed: the methods registry.

Method labels and row order come from harness.catalog (the method yamls); trainer settings that change the score
from harness.train.config.SCORE_KEYS.
"""
import math

from harness import catalog, results


def task_view(name, own=None):
    """How the report shows task `name`: {label, headline, dataset, table, title, columns, sort_key, metrics,
    metric_labels}. `columns` is 'tasks' (one shared table, a column per task, as Table 2) or 'metrics' (a table of its
    own, a column per metric in `metric_labels` order, as Table 3). `own` is the record's config.task, read only for a
    task not shipped here; without either: label = name, headline accuracy, a metrics table titled by the task."""
    meta = catalog.task_meta(name) or dict(own or {})
    layout = meta.get("report") or {}
    label = str(meta.get("label") or name)
    return {"label": label, "headline": meta.get("headline") or "accuracy",
            "dataset": meta.get("dataset") or meta.get("family"),   # `family`: the key's name in older records
            "table": layout.get("table") or name, "title": layout.get("title") or label,
            "columns": layout.get("columns") or "metrics",
            "sort_key": (layout.get("order", catalog.UNKNOWN_ORDER), name),   # Table 2's order, then by name
            "metrics": list(meta.get("metrics") or []), "metric_labels": dict(layout.get("metric_labels") or {})}


def _given(value):
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def tasks_in(runs):
    """task → task_view for every task in the runs frame; a task not shipped here is read from its first record's
    config.task (flattened in the frame as config.task.*)."""
    if runs.empty:
        return {}
    prefix = "config.task."
    columns = [c for c in runs.columns if c.startswith(prefix)]
    views = {}
    for task, group in runs.groupby("task", sort=True):
        first = group.iloc[0]
        views[task] = task_view(task, results.unflatten({c[len(prefix):]: first[c] for c in columns
                                                         if _given(first[c])}))
    return views


def size_param(method):
    """The registered size parameter of `method` (methods.size_param), None for one without or not registered."""
    import methods

    return methods.size_param(method)


def size_key(method_cfg):
    """Which setting sizes this run (`budget`, else the method's registered size parameter, else None): the registry's
    answer (methods.size_key), imported on first use: the registry imports every method module, and with them torch."""
    import methods

    return methods.size_key(method_cfg)


def method_defaults(method):
    """The defaults of the method's settings added after its records existed (methods.added_defaults): what a record
    without such a setting ran with."""
    import methods

    return methods.added_defaults(method)
