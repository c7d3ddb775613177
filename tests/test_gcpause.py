"""harness/gcpause.py: the collector held off while a run starts, then what is there frozen; an earlier run's garbage
never frozen; a caller's own gc.disable() left alone."""
import gc
import weakref

import pytest

from harness import gcpause


class Node:
    pass


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(gcpause, "_held", False)
    monkeypatch.setattr(gcpause, "_released", False)
    was = gc.isenabled()
    gc.enable()
    yield
    gc.unfreeze()
    (gc.enable if was else gc.disable)()


def cycle():
    """A garbage cycle (freed by a collection only) and a weak reference that says whether it was."""
    node = Node()
    node.me = node
    return weakref.ref(node)


def test_held_then_frozen_and_on_again(fresh):
    gcpause.hold()
    assert not gc.isenabled()
    gcpause.hold()                              # holding twice is holding
    before = gc.get_freeze_count()
    gcpause.release()
    assert gc.isenabled() and gc.get_freeze_count() > before
    gcpause.release()                           # nothing held: nothing done
    assert gc.isenabled()


def test_the_first_release_freezes_without_collecting_a_later_one_collects_first(fresh):
    first = cycle()
    gcpause.hold()
    gcpause.release()
    assert first() is not None                  # frozen as it was: the process's start-up garbage, once
    later = cycle()
    gcpause.hold()
    gcpause.release()
    assert later() is None                      # an earlier run's garbage is collected, never frozen


def test_a_callers_own_disabled_collector_is_left_alone(fresh):
    gc.disable()
    before = gc.get_freeze_count()
    gcpause.hold()
    gcpause.release()
    assert not gc.isenabled() and gc.get_freeze_count() == before
