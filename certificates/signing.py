"""Optional digital signature of a certificate PDF (PAdES baseline B-B, with pyHanko).

Used only when the hub is configured with a signing key and certificate. The signature is an
incremental update, so the signed file keeps the page, the PDF/A identification and the
embedded ``certificate.json`` of the rendered one. No time stamp is added (B-T needs a time
stamping authority, which this machine cannot reach); the signing time is the signer's clock.
"""

from __future__ import annotations

import io
from pathlib import Path

from pyhanko.keys import load_cert_from_pemder, load_certs_from_pemder, load_private_key_from_pemder
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from hub.errors import PermanentError

__all__ = ["SIGNATURE_FIELD", "SigningError", "sign_pdf"]

SIGNATURE_FIELD = "CertificateSignature"


class SigningError(PermanentError):
    """The key or certificate cannot be loaded, or the PDF cannot be signed."""

    code = "certificate_signing"


def sign_pdf(
    pdf: bytes,
    key_path: str | Path,
    cert_path: str | Path,
    passphrase: str | bytes | None = None,
    *,
    chain_paths: tuple[str | Path, ...] = (),
    reason: str = "Certificate of analysis issued by Quality Assurance",
    location: str | None = None,
) -> bytes:
    """``pdf`` with an invisible PAdES signature by the key at ``key_path`` (PEM or DER).

    ``cert_path`` is the signer's certificate and ``chain_paths`` any intermediate
    certificates to embed. Raises SigningError when the key material does not load (a wrong
    passphrase included) or the PDF cannot be signed.
    """
    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        key = load_private_key_from_pemder(str(key_path), passphrase=secret)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(f"cannot load the signing key {key_path}: {exc}") from exc
    try:
        # pyHanko's loaders are not annotated.
        cert = load_cert_from_pemder(str(cert_path))  # type: ignore[no-untyped-call]
        chain = list(load_certs_from_pemder([str(p) for p in chain_paths]))  # type: ignore[no-untyped-call]
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(f"cannot load the signing certificate {cert_path}: {exc}") from exc
    registry = SimpleCertificateStore()  # type: ignore[no-untyped-call]
    registry.register_multiple(chain)
    signer = signers.SimpleSigner(signing_cert=cert, signing_key=key, cert_registry=registry)
    metadata = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location,
    )
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        output = signers.PdfSigner(metadata, signer=signer).sign_pdf(writer)
    except (PdfError, ValueError) as exc:
        raise SigningError(f"cannot sign the certificate PDF: {exc}") from exc
    signed: bytes = output.getvalue()
    return signed
