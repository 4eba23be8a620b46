//! `information_schema` as Postgres shows it, for the tools that discover
//! tables and columns through it (Grafana, Metabase, DBeaver): `tables`,
//! `columns` (with Postgres's type names: `bigint`, `text`, `timestamp
//! without time zone`, and `udt_name`), `schemata` and `views`.
//!
//! Materialized views are listed in `tables` (as `VIEW`), unlike Postgres,
//! whose information schema leaves them out: in Sluice they are what
//! dashboards query, and Grafana lists tables from here.

use std::sync::{Arc, Weak};

use arrow::array::{ArrayRef, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::pg_catalog::{relation_rows, type_name_and_udt, type_of};
use crate::query::built::BuiltSchema;
use crate::query::Relations;

pub const TABLES: &[&str] = &["tables", "columns", "schemata", "views"];

/// `information_schema`, its tables built from the catalog at each query.
pub fn schema(relations: Weak<dyn Relations>) -> BuiltSchema {
    BuiltSchema::new("information_schema", TABLES, build, &[], relations)
}

fn texts(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn column(name: &str, t: DataType) -> Field {
    Field::new(name, t, true)
}

fn build(table: &str, relations: &dyn Relations) -> Option<(SchemaRef, Vec<ArrayRef>)> {
    let catalog = || Some("sluice".to_string());
    let rows: Vec<_> = relation_rows(relations)
        .into_iter()
        .filter(|r| r.kind != "i")
        .collect();
    let schema_name = |namespace: &str| Some(namespace.to_string());
    let (fields, columns) = match table {
        "tables" => {
            let n = rows.len();
            (
                vec![
                    column("table_catalog", DataType::Utf8),
                    column("table_schema", DataType::Utf8),
                    column("table_name", DataType::Utf8),
                    column("table_type", DataType::Utf8),
                    column("is_insertable_into", DataType::Utf8),
                ],
                vec![
                    texts(vec![catalog(); n]),
                    texts(
                        rows.iter()
                            .map(|r| schema_name(r.namespace_name()))
                            .collect(),
                    ),
                    texts(rows.iter().map(|r| Some(r.name.clone())).collect()),
                    texts(
                        rows.iter()
                            .map(|r| {
                                Some(
                                    if r.kind == "m" || r.kind == "v" {
                                        "VIEW"
                                    } else {
                                        "BASE TABLE"
                                    }
                                    .into(),
                                )
                            })
                            .collect(),
                    ),
                    texts(
                        rows.iter()
                            .map(|r| {
                                Some(
                                    if r.kind == "m" || r.kind == "v" {
                                        "NO"
                                    } else {
                                        "YES"
                                    }
                                    .into(),
                                )
                            })
                            .collect(),
                    ),
                ],
            )
        }
        "columns" => {
            let mut table_schema = Vec::new();
            let mut table_name = Vec::new();
            let mut column_name = Vec::new();
            let mut position = Vec::new();
            let mut nullable = Vec::new();
            let mut data_type = Vec::new();
            let mut udt_name = Vec::new();
            let mut precision = Vec::new();
            let mut scale = Vec::new();
            for r in &rows {
                for (i, f) in r.schema.fields().iter().enumerate() {
                    let (oid, _) = type_of(f.data_type());
                    let (name, udt) = type_name_and_udt(oid);
                    table_schema.push(schema_name(r.namespace_name()));
                    table_name.push(Some(r.name.clone()));
                    column_name.push(Some(f.name().clone()));
                    position.push(i as i32 + 1);
                    nullable.push(Some(if f.is_nullable() { "YES" } else { "NO" }.to_string()));
                    data_type.push(Some(name));
                    udt_name.push(Some(udt));
                    let (p, s) = match f.data_type() {
                        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
                            (Some(*p as i32), Some(*s as i32))
                        }
                        DataType::Int16 => (Some(16), Some(0)),
                        DataType::Int32 => (Some(32), Some(0)),
                        DataType::Int64 => (Some(64), Some(0)),
                        _ => (None, None),
                    };
                    precision.push(p);
                    scale.push(s);
                }
            }
            let n = column_name.len();
            (
                vec![
                    column("table_catalog", DataType::Utf8),
                    column("table_schema", DataType::Utf8),
                    column("table_name", DataType::Utf8),
                    column("column_name", DataType::Utf8),
                    column("ordinal_position", DataType::Int32),
                    column("column_default", DataType::Utf8),
                    column("is_nullable", DataType::Utf8),
                    column("data_type", DataType::Utf8),
                    column("character_maximum_length", DataType::Int32),
                    column("numeric_precision", DataType::Int32),
                    column("numeric_scale", DataType::Int32),
                    column("udt_catalog", DataType::Utf8),
                    column("udt_schema", DataType::Utf8),
                    column("udt_name", DataType::Utf8),
                    column("is_updatable", DataType::Utf8),
                ],
                vec![
                    texts(vec![catalog(); n]),
                    texts(table_schema),
                    texts(table_name),
                    texts(column_name),
                    Arc::new(Int32Array::from(position)),
                    texts(vec![None; n]),
                    texts(nullable),
                    texts(data_type),
                    Arc::new(Int32Array::from(vec![None::<i32>; n])),
                    Arc::new(Int32Array::from(precision)),
                    Arc::new(Int32Array::from(scale)),
                    texts(vec![catalog(); n]),
                    texts(vec![Some("pg_catalog".to_string()); n]),
                    texts(udt_name),
                    texts(vec![Some("NO".to_string()); n]),
                ],
            )
        }
        "schemata" => {
            let names = ["public", "sluice", "pg_catalog", "information_schema"];
            (
                vec![
                    column("catalog_name", DataType::Utf8),
                    column("schema_name", DataType::Utf8),
                    column("schema_owner", DataType::Utf8),
                ],
                vec![
                    texts(vec![catalog(); names.len()]),
                    texts(names.iter().map(|n| Some(n.to_string())).collect()),
                    texts(vec![Some("sluice".to_string()); names.len()]),
                ],
            )
        }
        "views" => {
            let views: Vec<_> = rows
                .iter()
                .filter(|r| r.kind == "m" || r.kind == "v")
                .collect();
            let n = views.len();
            (
                vec![
                    column("table_catalog", DataType::Utf8),
                    column("table_schema", DataType::Utf8),
                    column("table_name", DataType::Utf8),
                    column("view_definition", DataType::Utf8),
                ],
                vec![
                    texts(vec![catalog(); n]),
                    texts(
                        views
                            .iter()
                            .map(|r| schema_name(r.namespace_name()))
                            .collect(),
                    ),
                    texts(views.iter().map(|r| Some(r.name.clone())).collect()),
                    texts(
                        views
                            .iter()
                            .map(|r| relations.view_query(&r.name))
                            .collect(),
                    ),
                ],
            )
        }
        _ => return None,
    };
    Some((Arc::new(Schema::new(fields)), columns))
}
