"""One event's place in the chain, for its page (audit.chain.inspect_event): its own hash, its links to
its neighbours, and whether a signed checkpoint covers it."""

import pytest

from audit.chain import inspect_event
from audit.checkpoints import checkpoint
from audit.tests.tampering import by_seq, raw, rewrite_from, write

pytestmark = pytest.mark.django_db


def test_an_untouched_event_under_a_checkpoint_verifies_and_is_anchored():
    write(5)
    checkpoint()
    state = inspect_event(by_seq(2))
    assert state.ok and state.hash_ok and state.links_previous and state.links_next
    assert state.checkpoint.number == 1 and state.checkpoint_signed and state.covered
    assert state.walked == state.checkpoint.seq - 2 + 1 and state.anchored is True


def test_the_first_event_starts_the_chain_and_the_last_has_no_next_or_checkpoint():
    write(2)
    first, last = inspect_event(by_seq(1)), inspect_event(by_seq(2))
    assert first.ok and first.previous is None and first.links_previous
    assert last.ok and last.next is None and last.links_next is None and last.checkpoint is None


def test_an_edited_event_and_its_broken_link_are_named():
    write(4)
    checkpoint()
    raw(("UPDATE audit_auditevent SET verb = 'thing.forged' WHERE seq = 2", []))
    state = inspect_event(by_seq(2))
    assert not state.hash_ok and not state.covered and not state.ok
    assert "edited" in state.problems[0]


def test_a_rewrite_with_recomputed_hashes_is_caught_by_the_checkpoint_that_covers_it():
    write(4)
    checkpoint()
    rewrite_from(3, after={"n": "forged"})
    state = inspect_event(by_seq(3))
    assert state.hash_ok and state.links_previous  # the forger recomputed the hashes
    assert state.covered is False and "do not link up to the hash it signed" in state.problems[-1]


def test_a_missing_previous_event_is_named_and_a_far_checkpoint_is_not_walked():
    write(6)
    checkpoint()
    raw(("DELETE FROM audit_auditevent WHERE seq = 2", []))
    state = inspect_event(by_seq(3))
    assert not state.links_previous and "position 2 is missing" in state.problems[0]
    far = inspect_event(by_seq(4), walk_limit=1)
    assert far.covered is None and far.walked == 0 and far.checkpoint.number == 1
