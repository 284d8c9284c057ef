"""The LIMS connector: LabWare-style lots, samples, tests and results, and their reader."""
