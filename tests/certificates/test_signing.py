"""The optional PAdES signature: valid, covering the whole file, keeping the JSON attachment."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from certificates.attachment import attachment_json
from certificates.render import render_pdf
from certificates.samples import sample_certificate
from certificates.signing import SigningError, sign_pdf


@pytest.fixture(scope="module")
def key_and_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A self-signed QA signing certificate and its key, encrypted with a passphrase."""
    folder = tmp_path_factory.mktemp("signing")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Solvents QA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "qa-key.pem", folder / "qa-cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path, cert.public_bytes(serialization.Encoding.DER)


def test_signed_pdf_validates_and_keeps_its_data(key_and_cert: tuple[Path, Path, bytes]) -> None:
    key_path, cert_path, cert_der = key_and_cert
    data = sample_certificate()
    pdf = render_pdf(data, "en")
    signed = sign_pdf(pdf, key_path, cert_path, "s3cret", location="Shanghai")
    assert signed.startswith(pdf)  # an incremental update: the rendered file is untouched
    (signature,) = PdfFileReader(io.BytesIO(signed)).embedded_signatures
    status = validate_pdf_signature(
        signature, ValidationContext(trust_roots=[asn1_x509.Certificate.load(cert_der)])
    )
    assert status.intact and status.valid and status.trusted
    assert status.coverage is not None and status.coverage.name == "ENTIRE_FILE"
    assert attachment_json(signed) == data.model_dump(mode="json")


def test_wrong_passphrase_is_a_clear_error(key_and_cert: tuple[Path, Path, bytes]) -> None:
    key_path, cert_path, _ = key_and_cert
    with pytest.raises(SigningError, match="signing key"):
        sign_pdf(b"%PDF-1.7", key_path, cert_path, "wrong")
    with pytest.raises(SigningError, match="certificate"):
        sign_pdf(b"%PDF-1.7", key_path, key_path.with_name("missing.pem"), "s3cret")
