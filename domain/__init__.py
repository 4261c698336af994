"""The pure model of flowledger: task specs, the TaskTree aggregate, its events and rules.

Nothing here performs I/O; the application layer persists what this package decides.
"""
