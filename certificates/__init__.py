"""Certificates of analysis: gather LIMS results, snapshot and store, render HTML, publish PDF.

The certificate service builds on the hub's store and the LIMS reference schema
(``connectors/lims/schema.py``).
"""
