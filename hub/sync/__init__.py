"""The sync engine every connector shares: cross-reference, last-synced state, merge, conflicts.

A connector's applier takes a message from the other system, reads its own system's current
state, asks :func:`hub.sync.merge.decide` what to write, writes it in its own system's
transaction, then records the binding, the new state and any conflict in the hub's store.
"""
