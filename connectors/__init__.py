"""One package per system the hub talks to: its schema, its records, its reader and writer.

Connectors never import each other; they meet only in the canonical model and on the bus.
"""
