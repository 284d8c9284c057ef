"""The reference schemas match reference-systems.md on every dialect, and creating is idempotent."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.dialects import mysql

from hub.demo import create_schemas, ensure_database, metadata_for
from tests.reference.support import SERVER_DIALECTS, Databases, engine_for

# Written out from the contract by hand, so a typo in a schema module fails here.
CONTRACT: dict[str, dict[str, set[str]]] = {
    "crm": {
        "crm_account": {"account_id", "account_number", "name", "country", "email",
                        "erp_customer_code", "modified_at", "modified_by"},
        "crm_order": {"order_id", "order_number", "account_id", "status", "currency",
                      "customer_po", "requested_date", "promised_date", "erp_order_number",
                      "total_amount", "notes", "integration_status", "integration_message",
                      "version", "modified_at", "modified_by"},
        "crm_order_line": {"order_id", "line_no", "product_code", "description", "quantity",
                           "unit", "unit_price", "shipped_quantity"},
        "crm_shipment": {"shipment_id", "order_id", "erp_delivery_number", "shipped_on"},
        "crm_shipment_line": {"shipment_id", "line_no", "product_code", "batch_number",
                              "quantity"},
    },
    "erp": {
        "OCRD": {"CardCode", "CardName", "CardType", "E_Mail", "Country", "U_CRM_ID",
                 "UpdateDate"},
        "OITM": {"ItemCode", "ItemName", "InvntryUom", "ManBtchNum"},
        "ORDR": {"DocEntry", "DocNum", "CardCode", "NumAtCard", "DocDate", "DocDueDate",
                 "DocCur", "DocTotal", "DocStatus", "CANCELED", "Confirmed", "Comments",
                 "U_CRM_ID", "U_CustPO", "U_ReqDate", "UpdateDate", "UserSign2"},
        "RDR1": {"DocEntry", "LineNum", "ItemCode", "Dscription", "Quantity", "OpenQty",
                 "Price", "unitMsr", "ShipDate", "LineStatus", "U_CRM_LINE"},
        "ODLN": {"DocEntry", "DocNum", "CardCode", "DocDate", "UpdateDate"},
        "DLN1": {"DocEntry", "LineNum", "BaseType", "BaseEntry", "BaseLine", "ItemCode",
                 "Quantity"},
        "IBT1": {"ItemCode", "BatchNum", "BaseType", "BaseEntry", "BaseLinNum", "Quantity",
                 "CardCode"},
        "OINV": {"DocEntry", "DocNum", "CardCode", "DocDate", "DocTotal", "UpdateDate"},
        "INV1": {"DocEntry", "LineNum", "BaseType", "BaseEntry", "BaseLine", "ItemCode",
                 "Quantity"},
    },
    "lims": {
        "LOT": {"LOT_NUMBER", "LOT_NAME", "PRODUCT", "PRODUCT_VERSION", "PRODUCT_GRADE",
                "STATUS", "X_MANUFACTURE_DATE", "X_EXPIRY_DATE", "CHANGED_ON"},
        "PRODUCT": {"NAME", "VERSION", "DESCRIPTION", "X_DESCRIPTION_ZH"},
        "ANALYSIS": {"NAME", "VERSION", "DESCRIPTION", "X_METHOD"},
        "PRODUCT_SPEC": {"PRODUCT", "VERSION", "GRADE", "ANALYSIS", "COMPONENT", "UNITS",
                         "MIN_VALUE", "MAX_VALUE", "TEXT_VALUE", "REPORTED_NAME",
                         "X_REPORTED_NAME_ZH", "ORDER_NUMBER"},
        "SAMPLE": {"SAMPLE_NUMBER", "TEXT_ID", "STATUS", "PRODUCT", "PRODUCT_VERSION",
                   "PRODUCT_GRADE", "SAMPLING_POINT", "LOT", "IN_SPEC", "LOGIN_DATE",
                   "SAMPLED_DATE", "DATE_COMPLETED", "DATE_REVIEWED", "REVIEWER", "RE_SAMPLE",
                   "ORIGINAL_SAMPLE", "CHANGED_ON"},
        "TEST": {"TEST_NUMBER", "SAMPLE_NUMBER", "ANALYSIS", "VERSION", "REPLICATE_COUNT",
                 "STATUS", "IN_SPEC", "DATE_COMPLETED", "CHANGED_ON"},
        "RESULT": {"RESULT_NUMBER", "SAMPLE_NUMBER", "TEST_NUMBER", "ANALYSIS", "NAME",
                   "REPORTED_NAME", "REPLICATE_COUNT", "ENTRY", "FORMATTED_ENTRY", "UNITS",
                   "STATUS", "IN_SPEC", "REPORTABLE", "RESULT_TYPE", "DATE_ENTRY",
                   "ENTERED_BY", "CHANGED_ON"},
    },
}

PRIMARY_KEYS = {
    "crm_order_line": ["order_id", "line_no"],
    "crm_shipment_line": ["shipment_id", "line_no", "batch_number"],
    "ORDR": ["DocEntry"],
    "RDR1": ["DocEntry", "LineNum"],
    "DLN1": ["DocEntry", "LineNum"],
    "IBT1": ["BaseEntry", "BaseLinNum", "BatchNum"],
    "INV1": ["DocEntry", "LineNum"],
    "PRODUCT": ["NAME", "VERSION"],
    "PRODUCT_SPEC": ["PRODUCT", "VERSION", "GRADE", "ANALYSIS", "COMPONENT"],
    "RESULT": ["RESULT_NUMBER"],
}

WATERMARK_INDEXES = {
    "crm": [("crm_order", "modified_at"), ("crm_account", "modified_at")],
    "erp": [("ORDR", "UpdateDate"), ("ODLN", "UpdateDate"), ("OINV", "UpdateDate"),
            ("OCRD", "UpdateDate"), ("IBT1", "BatchNum")],
    "lims": [("LOT", "CHANGED_ON"), ("SAMPLE", "CHANGED_ON"), ("RESULT", "CHANGED_ON")],
}

NUMERIC_SCALES = {
    "crm": [("crm_order", "total_amount", 18, 2), ("crm_order_line", "quantity", 18, 3),
            ("crm_order_line", "unit_price", 18, 4)],
    "erp": [("ORDR", "DocTotal", 18, 2), ("RDR1", "Price", 18, 4), ("IBT1", "Quantity", 18, 3)],
    "lims": [("PRODUCT_SPEC", "MIN_VALUE", 18, 6), ("PRODUCT_SPEC", "MAX_VALUE", 18, 6)],
}

UNIQUE_COLUMNS = {
    "crm": [("crm_account", "account_number"), ("crm_order", "order_number"),
            ("crm_shipment", "erp_delivery_number")],
    "erp": [("ORDR", "DocNum"), ("ODLN", "DocNum"), ("OINV", "DocNum")],
    "lims": [("LOT", "LOT_NAME")],
}


def test_metadata_matches_contract_without_a_database() -> None:
    for system, tables in CONTRACT.items():
        metadata = metadata_for(system)
        assert set(metadata.tables) == set(tables)
        for name, columns in tables.items():
            assert {c.name for c in metadata.tables[name].columns} == columns, name
    with pytest.raises(ValueError, match="unknown system"):
        metadata_for("mes")


def test_create_schemas_is_idempotent_and_matches_contract(databases: Databases) -> None:
    urls = databases.systems()
    create_schemas(urls)
    create_schemas(urls)  # a second run finds everything in place and changes nothing

    for system, url in urls.items():
        with engine_for(url) as engine:
            inspector = inspect(engine)
            assert set(inspector.get_table_names()) == set(CONTRACT[system])
            for table, columns in CONTRACT[system].items():
                found = {c["name"] for c in inspector.get_columns(table)}
                assert found == columns, f"{system}.{table}"
            for table, key in PRIMARY_KEYS.items():
                if table in CONTRACT[system]:
                    pk = inspector.get_pk_constraint(table)["constrained_columns"]
                    assert sorted(pk) == sorted(key), table


def test_types_keys_and_indexes(databases: Databases) -> None:
    urls = databases.systems()
    create_schemas(urls)
    for system, url in urls.items():
        with engine_for(url) as engine:
            inspector = inspect(engine)
            for table, column, precision, scale in NUMERIC_SCALES[system]:
                kind = next(c["type"] for c in inspector.get_columns(table)
                            if c["name"] == column)
                assert (kind.precision, kind.scale) == (precision, scale), f"{table}.{column}"
            for table, column in WATERMARK_INDEXES[system]:
                leading = [ix["column_names"][0] for ix in inspector.get_indexes(table)]
                assert column in leading, f"no index leads with {table}.{column}"
            for table, column in UNIQUE_COLUMNS[system]:
                uniques = [u["column_names"] for u in inspector.get_unique_constraints(table)]
                uniques += [ix["column_names"] for ix in inspector.get_indexes(table)
                            if ix.get("unique")]
                assert [column] in uniques, f"{table}.{column} is not unique"
            if engine.dialect.name == "mysql":
                changed = next(c["type"] for c in inspector.get_columns("LOT" if system ==
                               "lims" else "ORDR" if system == "erp" else "crm_order")
                               if c["name"] in ("CHANGED_ON", "UpdateDate", "modified_at"))
                assert isinstance(changed, mysql.DATETIME) and changed.fsp == 6


def test_erp_foreign_keys_follow_the_contract(databases: Databases) -> None:
    url = databases.url("erp")
    create_schemas({"erp": url})
    with engine_for(url) as engine:
        inspector = inspect(engine)
        ordr = {(tuple(fk["constrained_columns"]), fk["referred_table"])
                for fk in inspector.get_foreign_keys("ORDR")}
        rdr1 = {(tuple(fk["constrained_columns"]), fk["referred_table"])
                for fk in inspector.get_foreign_keys("RDR1")}
    assert (("CardCode",), "OCRD") in ordr
    assert {(("DocEntry",), "ORDR"), (("ItemCode",), "OITM")} <= rdr1


@pytest.mark.parametrize("kind", SERVER_DIALECTS)
def test_ensure_database_creates_once(kind: str, tmp_path) -> None:
    dbs = Databases(kind, tmp_path)
    dbs.check_server()
    url = dbs.url("only")
    try:
        assert ensure_database(url) is True
        assert ensure_database(url) is False
        with engine_for(url) as engine, engine.connect() as conn:
            if kind == "postgresql":
                encoding = conn.execute(text(
                    "SELECT pg_encoding_to_char(encoding) FROM pg_database"
                    " WHERE datname = current_database()")).scalar_one()
                assert encoding == "UTF8"
            else:
                charset = conn.execute(text(
                    "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA"
                    " WHERE SCHEMA_NAME = DATABASE()")).scalar_one()
                assert charset == "utf8mb4"
    finally:
        dbs.drop_all()


def test_ensure_database_leaves_sqlite_alone(tmp_path) -> None:
    path = tmp_path / "never.db"
    assert ensure_database(f"sqlite:///{path}") is False
    assert not path.exists()
