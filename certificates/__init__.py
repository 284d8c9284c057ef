"""Certificates of analysis: gather LIMS results, snapshot and store, render HTML, publish PDF.

The certificate service builds on the hub's store and the LIMS reference schema
(``connectors/lims/schema.py``). Its steps, each replaceable on its own:

- :mod:`certificates.data`: what a certificate says (:class:`~certificates.data.CertificateData`),
  the snapshot stored with every issued PDF.
- :mod:`certificates.html`: ``render_html(data, lang)``, the certificate as HTML from a base
  template of section partials (``certificates/templates``), autoescaped throughout.
- :mod:`certificates.render`: ``render_pdf(data, lang)``, PDF/A-3u with the data embedded as
  ``certificate.json``; the only module that imports WeasyPrint, with a URL fetcher that
  serves bundled assets only.
- :mod:`certificates.attachment`: ``attachment_json(pdf)``, the embedded data read back.
- :mod:`certificates.signing`: ``sign_pdf(...)``, an optional PAdES signature (pyHanko).
- :mod:`certificates.service`: issuing, versions and storage in the hub's store, on
  :mod:`certificates.entitlements` (who got which batch); :mod:`certificates.records` (what
  it hands out: versions, outcomes, errors), :mod:`certificates.blocks` (what cannot be
  issued, and the record operations see), :mod:`certificates.standalone` (a service of its
  own for a command); :mod:`certificates.parts` (the daemon's ``certificates`` and
  ``certificate-watcher``), :mod:`certificates.api` (HTTP and the verification page),
  :mod:`certificates.cli` and :mod:`certificates.bulk` (commands).

Nothing is imported here, so ``import certificates.data`` stays light: WeasyPrint and the
fonts load only when a PDF is rendered.
"""
