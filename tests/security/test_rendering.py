"""Hostile text in the ERP and the LIMS, all the way to a customer's PDF over HTTP: template
code and markup print literally, and the renderer fetches nothing (a local server that
would answer records every request)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from sqlalchemy import update

from connectors.erp.schema import ocrd, oitm
from connectors.lims.schema import analysis, product, product_spec, sample
from hub.http.app import create_app
from tests.certificates.kit import pdftotext, recording_server, squash
from tests.certificates.world import HUAYI, served, world
from tests.security.conftest import BATCH, make_token


def test_hostile_erp_and_lims_text_prints_literally_and_fetches_nothing(tmp_path: Path) -> None:
    with recording_server() as server, world(("sqlite", "sqlite"), tmp_path) as w:
        local = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{local}/probe", timeout=5) as reply:
            assert reply.read() == b"fetched"  # it answers: a fetch would be recorded
        server.requests.clear()
        texts = {
            "customer": "{{7*7}} {% if 1 %}X{% endif %} <b>Ltd</b>",
            "item": f'<img src="{local}/item.png"> ${{7*7}}',
            "product": f'{{{{ 7*7 }}}}<link rel="stylesheet" href="{local}/p.css">',
            "product_zh": f'乙酸乙酯<img src="{local}/zh.png">{{{{ 7*7 }}}}',
            "spec": '<img src="file:///etc/passwd">{% raw %}',
            "method": f'<div style="background:url({local}/bg.png)">SOP</div>',
            "reviewer": "{{ config }}<script>x</script>",
        }
        with w.erp.begin() as conn:
            conn.execute(update(ocrd).where(ocrd.c.CardCode == HUAYI)
                         .values(CardName=texts["customer"]))
            conn.execute(update(oitm).where(oitm.c.ItemCode == "ETAC-99")
                         .values(ItemName=texts["item"]))
        with w.lims.begin() as conn:
            conn.execute(update(product).where(product.c.NAME == "ETAC-99").values(
                DESCRIPTION=texts["product"], X_DESCRIPTION_ZH=texts["product_zh"]))
            conn.execute(update(product_spec).where(
                product_spec.c.PRODUCT == "ETAC-99", product_spec.c.COMPONENT == "APPEARANCE",
            ).values(REPORTED_NAME=texts["spec"]))
            conn.execute(update(analysis).where(analysis.c.NAME == "APPEARANCE")
                         .values(X_METHOD=texts["method"]))
            conn.execute(update(sample).values(REVIEWER=texts["reviewer"]))
        w.deliver(HUAYI, BATCH)
        token = make_token(w, "customer", HUAYI)
        with served(create_app(w.runtime)) as client:
            pdfs = {}
            for lang in ("en", "zh"):
                answer = client.get(f"/api/v1/certificates/{BATCH}/pdf?lang={lang}",
                                    headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 200, answer.text
                pdfs[lang] = answer.content
        assert server.requests == []
    english = squash(pdftotext(pdfs["en"], tmp_path, raw=True))
    chinese = squash(pdftotext(pdfs["zh"], tmp_path, raw=True))
    printed = [name for name, text in texts.items() if squash(text) in english + chinese]
    # Every field that the certificate shows is shown as it was typed.
    assert {"customer", "spec", "method", "reviewer"} <= set(printed), printed
    assert {"product", "item"} & set(printed), printed
    assert "root:x:0" not in english and "fetched" not in english
    assert "X" + squash("Ltd") not in english.replace(squash(texts["customer"]), "")
