"""The LIMS connector: LabWare-style lots, samples, tests and results, and their reader.

- :mod:`connectors.lims.schema` — the reference LIMS's tables.
- :class:`LimsReader` — what goes on a batch's certificate of analysis
  (:class:`certificates.data.BatchQuality`), one lot or many at once, and the lots whose
  release data changed (:class:`LotChange`). A lot that exists but has no authorised release
  sample raises :class:`NotReleased`.

The reader only reads: quality control happens in the LIMS.
"""

from connectors.lims.reader import LimsReader, LotChange, NotReleased

__all__ = ["LimsReader", "LotChange", "NotReleased"]
