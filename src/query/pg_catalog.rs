//! `pg_catalog` for Postgres clients: enough for psql's `\d name`, `\dt`,
//! `\dm` and `\dn`, and for tools that read the catalog the same way.
//!
//! Tables are built from the server's catalog each time a query reads them.
//! Sources are shown as tables (relkind `r`), materialized views as `m`, the
//! system tables in schema `sluice`. Functions psql calls are provided, and
//! Postgres-only syntax in catalog queries (`OPERATOR(pg_catalog.~)`,
//! `COLLATE pg_catalog.default`, `::regclass`, qualified function names,
//! `ARRAY(subquery)`) is rewritten before DataFusion plans the query.

use crate::frontend::parser::function_call as call;
use std::ops::ControlFlow;
use std::sync::{Arc, Weak};

use arrow::array::{
    ArrayRef, BooleanArray, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArguments, ObjectName, ObjectNamePart, VisitMut, VisitorMut,
};

use crate::query::built::BuiltSchema;
use crate::query::{Relation, Relations};

/// Namespace oids, as in Postgres where they exist.
const PG_CATALOG_OID: i64 = 11;
const PUBLIC_OID: i64 = 2200;
const SLUICE_OID: i64 = 16_383;
/// The one tablespace.
const DEFAULT_TABLESPACE_OID: i64 = 1663;
/// The access methods: tables, and the btree indexes of primary keys.
const HEAP_OID: i64 = 2;
const BTREE_OID: i64 = 403;
/// User relations get oids in [FIRST_USER_OID, SYSTEM_TABLE_OID); the
/// system tables above (so `pg_table_is_visible` can tell them apart).
const FIRST_USER_OID: i64 = 16_384;
const SYSTEM_TABLE_OID: i64 = 1 << 30;

/// A stable oid for a relation name.
pub fn relation_oid(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    FIRST_USER_OID + (h % (SYSTEM_TABLE_OID - FIRST_USER_OID) as u64) as i64
}

/// A role's oid, made from its name.
fn role_oid(name: &str) -> i64 {
    relation_oid(&format!("role:{name}"))
}

/// (oid, name, length) of the types Sluice sends.
const TYPES: &[(i64, &str, i16)] = &[
    (16, "bool", 1),
    (17, "bytea", -1),
    (20, "int8", 8),
    (21, "int2", 2),
    (23, "int4", 4),
    (25, "text", -1),
    (700, "float4", 4),
    (701, "float8", 8),
    (1043, "varchar", -1),
    (1082, "date", 4),
    (1083, "time", 8),
    (1114, "timestamp", 8),
    (1184, "timestamptz", 8),
    (1186, "interval", 16),
    (1700, "numeric", -1),
    (1000, "_bool", -1),
    (1005, "_int2", -1),
    (1007, "_int4", -1),
    (1016, "_int8", -1),
    (1021, "_float4", -1),
    (1022, "_float8", -1),
    (1009, "_text", -1),
    (1231, "_numeric", -1),
    (1182, "_date", -1),
    (1115, "_timestamp", -1),
    (1185, "_timestamptz", -1),
];

/// Postgres's `pg_size_pretty`: bytes below 10 kB, then kB, MB, GB, TB
/// and PB below 20 of the next unit, halves rounded away from zero.
fn size_pretty(size: i64) -> String {
    // (name, limit, rounds, bits)
    const UNITS: &[(&str, i64, bool, u32)] = &[
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    let mut size = size;
    for (i, (name, limit, round, bits)) in UNITS.iter().enumerate() {
        let last = i + 1 == UNITS.len();
        if last || size.abs() < *limit {
            if *round {
                size = (size + if size < 0 { -1 } else { 1 }) / 2;
            }
            return format!("{size} {name}");
        }
        let (_, _, next_round, next_bits) = UNITS[i + 1];
        let shift = next_bits - bits - next_round as u32 + *round as u32;
        size /= 1i64 << shift;
    }
    unreachable!("the last unit always answers")
}

/// A LIKE pattern whose escape character is `escape` (none: no escapes),
/// written with backslash escapes.
fn like_escape(pattern: &str, escape: Option<char>) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            if let Some(next) = chars.next() {
                out.push('\\');
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// The oid of a type by its name (`int4`, `integer`, `pg_catalog.text`,
/// `integer[]`); None for types Sluice does not have.
fn type_oid(name: &str) -> Option<i64> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.trim_start_matches("pg_catalog.").trim_matches('"');
    if let Some(element) = name.strip_suffix("[]") {
        let element = type_oid(element)?;
        return TYPES
            .iter()
            .find(|t| element_of(t.0) == Some(element))
            .map(|t| t.0);
    }
    TYPES
        .iter()
        .find(|t| t.1 == name || format_type(t.0, -1).as_deref() == Some(name))
        .map(|t| t.0)
        .or(match name {
            "int" | "integer" => Some(23),
            "character varying" => Some(1043),
            "float" => Some(701),
            "decimal" => Some(1700),
            _ => None,
        })
}

/// The element type of an array type.
fn element_of(array_oid: i64) -> Option<i64> {
    Some(match array_oid {
        1000 => 16,
        1005 => 21,
        1007 => 23,
        1016 => 20,
        1021 => 700,
        1022 => 701,
        1009 => 25,
        1231 => 1700,
        1182 => 1082,
        1115 => 1114,
        1185 => 1184,
        _ => return None,
    })
}

/// The type oid and type modifier a column is shown with.
pub(crate) fn type_of(t: &DataType) -> (i64, i32) {
    let pg = crate::server::encode::pg_type(t);
    let typmod = match t {
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            ((*p as i32) << 16 | (*s as i32 & 0xffff)) + 4
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => 3,
        DataType::Timestamp(TimeUnit::Second, _) => 0,
        _ => -1,
    };
    (pg.oid() as i64, typmod)
}

/// Postgres's `format_type(oid, typmod)`.
pub(crate) fn format_type(oid: i64, typmod: i32) -> Option<String> {
    if let Some(element) = element_of(oid) {
        return format_type(element, -1).map(|t| format!("{t}[]"));
    }
    let base = match oid {
        16 => "boolean",
        17 => "bytea",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        25 => "text",
        700 => "real",
        701 => "double precision",
        1043 => "character varying",
        1082 => "date",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1186 => "interval",
        1700 => "numeric",
        _ => return None,
    };
    Some(match oid {
        1700 if typmod >= 4 => {
            let m = typmod - 4;
            format!("numeric({},{})", m >> 16, m & 0xffff)
        }
        1114 if typmod >= 0 => format!("timestamp({typmod}) without time zone"),
        1184 if typmod >= 0 => format!("timestamp({typmod}) with time zone"),
        _ => base.to_string(),
    })
}

/// One relation as the catalog tables show it.
pub(crate) struct RelationRow {
    pub oid: i64,
    pub name: String,
    pub namespace: i64,
    /// `r` table, `m` materialized view, `i` index.
    pub kind: &'static str,
    pub schema: SchemaRef,
}

impl RelationRow {
    pub fn namespace_name(&self) -> &'static str {
        match self.namespace {
            PUBLIC_OID => "public",
            SLUICE_OID => "sluice",
            _ => "pg_catalog",
        }
    }
}

/// A type's name as `information_schema.columns` shows it (`bigint`,
/// `timestamp without time zone`, `ARRAY`), and its `udt_name` (`int8`).
pub(crate) fn type_name_and_udt(oid: i64) -> (String, String) {
    let udt = TYPES
        .iter()
        .find(|t| t.0 == oid)
        .map(|t| t.1.to_string())
        .unwrap_or_else(|| "text".into());
    let name = if element_of(oid).is_some() {
        "ARRAY".to_string()
    } else {
        format_type(oid, -1).unwrap_or_else(|| "text".into())
    };
    (name, udt)
}

/// An ordinary table's primary key, as Postgres shows it: a constraint
/// `<table>_pkey` and the unique index that backs it.
struct PrimaryKey {
    table: String,
    table_oid: i64,
    /// The constraint's and the index's name.
    name: String,
    constraint_oid: i64,
    index_oid: i64,
    /// The key columns: their numbers (from 1) and names.
    columns: Vec<(i16, String)>,
}

fn primary_keys(relations: &dyn Relations) -> Vec<PrimaryKey> {
    let mut names = relations.relation_names();
    names.sort();
    names
        .into_iter()
        .filter_map(|table| {
            let Some(Relation::Table(t)) = relations.relation(&table) else {
                return None;
            };
            let columns: Vec<(i16, String)> = t
                .key()
                .iter()
                .map(|i| (*i as i16 + 1, t.schema().field(*i).name().clone()))
                .collect();
            let name = format!("{table}_pkey");
            Some(PrimaryKey {
                table_oid: relation_oid(&table),
                constraint_oid: relation_oid(&format!("constraint:{name}")),
                index_oid: relation_oid(&format!("index:{name}")),
                table,
                name,
                columns,
            })
        })
        .filter(|k| !k.columns.is_empty())
        .collect()
}

impl PrimaryKey {
    /// The index's definition, as `pg_get_indexdef` gives it.
    fn index_definition(&self) -> String {
        format!(
            "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
            quote_name(&self.name),
            quote_name(&self.table),
            self.column_list()
        )
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(_, c)| quote_name(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A name as SQL writes it: quoted unless it is lower case letters,
/// digits and underscores.
fn quote_name(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

pub(crate) fn relation_rows(relations: &dyn Relations) -> Vec<RelationRow> {
    let mut out = Vec::new();
    let mut names = relations.relation_names();
    names.sort();
    for name in names {
        let (kind, schema) = match relations.relation(&name) {
            Some(Relation::Source(s)) => ("r", s),
            Some(Relation::Table(t)) => ("r", t.schema().clone()),
            Some(Relation::View(v)) => ("m", v.schema().clone()),
            Some(Relation::Logical(s)) => ("v", s),
            None => continue,
        };
        out.push(RelationRow {
            oid: relation_oid(&name),
            name,
            namespace: PUBLIC_OID,
            kind,
            schema,
        });
    }
    // The indexes of primary keys, with their key columns.
    for key in primary_keys(relations) {
        let Some(Relation::Table(t)) = relations.relation(&key.table) else {
            continue;
        };
        let fields: Vec<Field> = t
            .key()
            .iter()
            .map(|i| t.schema().field(*i).clone())
            .collect();
        out.push(RelationRow {
            oid: key.index_oid,
            name: key.name,
            namespace: PUBLIC_OID,
            kind: "i",
            schema: Arc::new(Schema::new(fields)),
        });
    }
    for (i, table) in crate::query::system::TABLES.iter().enumerate() {
        if let Some(schema) = crate::query::system::schema_of(table) {
            out.push(RelationRow {
                oid: SYSTEM_TABLE_OID + i as i64,
                name: table.to_string(),
                namespace: SLUICE_OID,
                kind: "r",
                schema,
            });
        }
    }
    out
}

fn s(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn i64s(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

fn bools(n: usize, v: bool) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![v; n]))
}

fn texts(n: usize, v: &str) -> ArrayRef {
    Arc::new(StringArray::from(vec![v; n]))
}

fn field(name: &str, t: DataType) -> Field {
    Field::new(name, t, true)
}

/// Catalog tables that are empty in Sluice, with Postgres's columns
/// (`name:type`, type o = oid, b = bool, i = int4, h = int2, s = text,
/// l = text[]).
const EMPTY_CATALOGS: &[(&str, &str)] = &[
    ("pg_attrdef", "oid:o adrelid:o adnum:h adbin:s"),
    ("pg_collation", "oid:o collname:s collnamespace:o collowner:o collprovider:s collisdeterministic:b collencoding:i collcollate:s collctype:s colliculocale:s collversion:s"),
    ("pg_enum", "oid:o enumtypid:o enumsortorder:o enumlabel:s"),
    ("pg_opclass", "oid:o opcmethod:o opcname:s opcnamespace:o opcowner:o opcfamily:o opcintype:o opcdefault:b opckeytype:o"),
    ("pg_inherits", "inhrelid:o inhparent:o inhseqno:i inhdetachpending:b"),
    ("pg_description", "objoid:o classoid:o objsubid:i description:s"),
    ("pg_trigger", "oid:o tgrelid:o tgparentid:o tgname:s tgfoid:o tgtype:h tgenabled:s tgisinternal:b tgconstraint:o"),
    ("pg_policy", "oid:o polname:s polrelid:o polcmd:s polpermissive:b polroles:s polqual:s polwithcheck:s"),
    ("pg_rewrite", "oid:o rulename:s ev_class:o ev_type:s ev_enabled:s is_instead:b"),
    ("pg_statistic_ext", "oid:o stxrelid:o stxname:s stxnamespace:o stxowner:o stxstattarget:i stxkeys:s stxkind:l stxexprs:s"),
    ("pg_publication", "oid:o pubname:s pubowner:o puballtables:b pubinsert:b pubupdate:b pubdelete:b pubtruncate:b pubviaroot:b"),
    ("pg_publication_rel", "oid:o prpubid:o prrelid:o prqual:s prattrs:s"),
    ("pg_publication_namespace", "oid:o pnpubid:o pnnspid:o"),
    ("pg_partitioned_table", "partrelid:o partstrat:s partnatts:h partdefid:o"),
    ("pg_foreign_table", "ftrelid:o ftserver:o ftoptions:s"),
    ("pg_sequence", "seqrelid:o seqtypid:o seqstart:o seqincrement:o seqmax:o seqmin:o seqcache:o seqcycle:b"),
    ("pg_proc", "oid:o proname:s pronamespace:o proowner:o prokind:s prorettype:o"),
    ("pg_auth_members", "oid:o roleid:o member:o grantor:o admin_option:b"),
    ("pg_extension", "oid:o extname:s extowner:o extnamespace:o extversion:s"),
    ("pg_default_acl", "oid:o defaclrole:o defaclnamespace:o defaclobjtype:s defaclacl:l"),
];

/// `pg_settings`: the server's fixed settings that clients read from it
/// (name, value, type); JDBC's metadata needs the limits.
const SETTINGS: &[(&str, &str, &str)] = &[
    ("server_version", "15.0", "string"),
    ("server_version_num", "150000", "integer"),
    ("server_encoding", "UTF8", "string"),
    ("max_index_keys", "32", "integer"),
    ("max_identifier_length", "63", "integer"),
    ("max_function_args", "100", "integer"),
    ("integer_datetimes", "on", "bool"),
    ("standard_conforming_strings", "on", "bool"),
    ("block_size", "8192", "integer"),
];

/// The catalog tables Sluice has; the others psql reads are empty.
pub const TABLES: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_type",
    "pg_am",
    "pg_database",
    "pg_roles",
    "pg_user",
    "pg_settings",
    "pg_attrdef",
    "pg_collation",
    "pg_index",
    "pg_inherits",
    "pg_constraint",
    "pg_trigger",
    "pg_policy",
    "pg_rewrite",
    "pg_description",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_partitioned_table",
    "pg_foreign_table",
    "pg_sequence",
    "pg_proc",
    "pg_tablespace",
    "pg_auth_members",
    "pg_extension",
    "pg_default_acl",
    "pg_enum",
    "pg_opclass",
    "pg_cursors",
];

fn build(table: &str, relations: &dyn Relations) -> Option<(SchemaRef, Vec<ArrayRef>)> {
    use DataType::*;
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = match table {
        "pg_namespace" => (
            vec![
                field("oid", Int64),
                field("nspname", Utf8),
                field("nspowner", Int64),
                field("nspacl", Utf8),
            ],
            vec![
                i64s(vec![PG_CATALOG_OID, PUBLIC_OID, SLUICE_OID, 13_000]),
                s(vec![
                    "pg_catalog".into(),
                    "public".into(),
                    "sluice".into(),
                    "information_schema".into(),
                ]),
                i64s(vec![10; 4]),
                Arc::new(StringArray::from(vec![None::<&str>; 4])),
            ],
        ),
        "pg_class" => {
            let rows = relation_rows(relations);
            let n = rows.len();
            let indexed: Vec<i64> = primary_keys(relations)
                .iter()
                .map(|k| k.table_oid)
                .collect();
            (
                vec![
                    field("oid", Int64),
                    field("relname", Utf8),
                    field("relnamespace", Int64),
                    field("reltype", Int64),
                    field("relowner", Int64),
                    field("relam", Int64),
                    field("relkind", Utf8),
                    field("relnatts", Int16),
                    field("relchecks", Int16),
                    field("relhasindex", Boolean),
                    field("relhasrules", Boolean),
                    field("relhastriggers", Boolean),
                    field("relrowsecurity", Boolean),
                    field("relforcerowsecurity", Boolean),
                    field("relispartition", Boolean),
                    field("relhassubclass", Boolean),
                    field("relpersistence", Utf8),
                    field("relreplident", Utf8),
                    field("reltablespace", Int64),
                    field("reloftype", Int64),
                    field("reltoastrelid", Int64),
                    field("relpages", Int32),
                    field("reltuples", Float32),
                    field("reloptions", List(Arc::new(Field::new("item", Utf8, true)))),
                    field("relacl", List(Arc::new(Field::new("item", Utf8, true)))),
                    field("relpartbound", Utf8),
                ],
                vec![
                    i64s(rows.iter().map(|r| r.oid).collect()),
                    s(rows.iter().map(|r| r.name.clone()).collect()),
                    i64s(rows.iter().map(|r| r.namespace).collect()),
                    i64s(vec![0; n]),
                    i64s(vec![10; n]),
                    i64s(
                        rows.iter()
                            .map(|r| match r.kind {
                                "i" => BTREE_OID,
                                "r" | "m" => HEAP_OID,
                                _ => 0,
                            })
                            .collect(),
                    ),
                    s(rows.iter().map(|r| r.kind.to_string()).collect()),
                    Arc::new(Int16Array::from(
                        rows.iter()
                            .map(|r| r.schema.fields().len() as i16)
                            .collect::<Vec<_>>(),
                    )),
                    Arc::new(Int16Array::from(vec![0; n])),
                    Arc::new(BooleanArray::from(
                        rows.iter()
                            .map(|r| indexed.contains(&r.oid))
                            .collect::<Vec<_>>(),
                    )),
                    bools(n, false),
                    bools(n, false),
                    bools(n, false),
                    bools(n, false),
                    bools(n, false),
                    bools(n, false),
                    texts(n, "p"),
                    texts(n, "d"),
                    i64s(vec![0; n]),
                    i64s(vec![0; n]),
                    i64s(vec![0; n]),
                    Arc::new(Int32Array::from(vec![0; n])),
                    Arc::new(arrow::array::Float32Array::from(vec![-1.0; n])),
                    arrow::array::new_null_array(
                        &List(Arc::new(Field::new("item", Utf8, true))),
                        n,
                    ),
                    arrow::array::new_null_array(
                        &List(Arc::new(Field::new("item", Utf8, true))),
                        n,
                    ),
                    Arc::new(StringArray::from(vec![None::<&str>; n])),
                ],
            )
        }
        "pg_attribute" => {
            let mut rel = Vec::new();
            let mut name = Vec::new();
            let mut typ = Vec::new();
            let mut typmod = Vec::new();
            let mut num = Vec::new();
            let mut notnull = Vec::new();
            // A primary key's columns are NOT NULL.
            let keys = primary_keys(relations);
            for r in relation_rows(relations) {
                let key = keys.iter().find(|k| k.table_oid == r.oid);
                for (i, f) in r.schema.fields().iter().enumerate() {
                    let (oid, m) = type_of(f.data_type());
                    let attnum = i as i16 + 1;
                    rel.push(r.oid);
                    name.push(f.name().clone());
                    typ.push(oid);
                    typmod.push(m);
                    num.push(attnum);
                    notnull.push(
                        !f.is_nullable()
                            || key.is_some_and(|k| k.columns.iter().any(|(a, _)| *a == attnum)),
                    );
                }
            }
            let n = rel.len();
            (
                vec![
                    field("attrelid", Int64),
                    field("attname", Utf8),
                    field("atttypid", Int64),
                    field("atttypmod", Int32),
                    field("attnum", Int16),
                    field("attnotnull", Boolean),
                    field("attisdropped", Boolean),
                    field("atthasdef", Boolean),
                    field("attidentity", Utf8),
                    field("attgenerated", Utf8),
                    field("attcollation", Int64),
                    field("attlen", Int16),
                    field("attstorage", Utf8),
                    field("attcompression", Utf8),
                    field("attstattarget", Int32),
                    field("attoptions", Utf8),
                    field("attfdwoptions", Utf8),
                ],
                vec![
                    i64s(rel),
                    s(name),
                    i64s(typ),
                    Arc::new(Int32Array::from(typmod)),
                    Arc::new(Int16Array::from(num)),
                    Arc::new(BooleanArray::from(notnull)),
                    bools(n, false),
                    bools(n, false),
                    texts(n, ""),
                    texts(n, ""),
                    i64s(vec![0; n]),
                    Arc::new(Int16Array::from(vec![-1; n])),
                    texts(n, "p"),
                    texts(n, ""),
                    Arc::new(Int32Array::from(vec![-1; n])),
                    Arc::new(StringArray::from(vec![None::<&str>; n])),
                    Arc::new(StringArray::from(vec![None::<&str>; n])),
                ],
            )
        }
        "pg_type" => (
            vec![
                field("oid", Int64),
                field("typname", Utf8),
                field("typnamespace", Int64),
                field("typlen", Int16),
                field("typtype", Utf8),
                field("typcollation", Int64),
                field("typelem", Int64),
                field("typbasetype", Int64),
                field("typrelid", Int64),
                field("typarray", Int64),
                field("typowner", Int64),
                field("typdelim", Utf8),
                field("typnotnull", Boolean),
                field("typtypmod", Int32),
                field("typdefault", Utf8),
                field("typinput", Utf8),
            ],
            vec![
                i64s(TYPES.iter().map(|t| t.0).collect()),
                s(TYPES.iter().map(|t| t.1.to_string()).collect()),
                i64s(vec![PG_CATALOG_OID; TYPES.len()]),
                Arc::new(Int16Array::from(
                    TYPES.iter().map(|t| t.2).collect::<Vec<_>>(),
                )),
                texts(TYPES.len(), "b"),
                i64s(vec![0; TYPES.len()]),
                i64s(TYPES.iter().map(|t| element_of(t.0).unwrap_or(0)).collect()),
                i64s(vec![0; TYPES.len()]),
                i64s(vec![0; TYPES.len()]),
                i64s(
                    TYPES
                        .iter()
                        .map(|t| {
                            TYPES
                                .iter()
                                .find(|a| element_of(a.0) == Some(t.0))
                                .map(|a| a.0)
                                .unwrap_or(0)
                        })
                        .collect(),
                ),
                i64s(vec![10; TYPES.len()]),
                texts(TYPES.len(), ","),
                bools(TYPES.len(), false),
                Arc::new(Int32Array::from(vec![-1; TYPES.len()])),
                Arc::new(StringArray::from(vec![None::<&str>; TYPES.len()])),
                s(TYPES
                    .iter()
                    .map(|t| {
                        if t.1.starts_with('_') {
                            "array_in".to_string()
                        } else {
                            format!("{}in", t.1)
                        }
                    })
                    .collect()),
            ],
        ),
        "pg_am" => (
            vec![
                field("oid", Int64),
                field("amname", Utf8),
                field("amtype", Utf8),
            ],
            vec![
                i64s(vec![HEAP_OID, BTREE_OID]),
                s(vec!["heap".into(), "btree".into()]),
                s(vec!["t".into(), "i".into()]),
            ],
        ),
        "pg_index" => {
            let keys = primary_keys(relations);
            let n = keys.len();
            let int2s = |values: Vec<Vec<i16>>| -> ArrayRef {
                Arc::new(arrow::array::ListArray::from_iter_primitive::<
                    arrow::datatypes::Int16Type,
                    _,
                    _,
                >(
                    values
                        .into_iter()
                        .map(|v| Some(v.into_iter().map(Some).collect::<Vec<_>>())),
                ))
            };
            let oids = |values: Vec<Vec<i64>>| -> ArrayRef {
                Arc::new(arrow::array::ListArray::from_iter_primitive::<
                    arrow::datatypes::Int64Type,
                    _,
                    _,
                >(
                    values
                        .into_iter()
                        .map(|v| Some(v.into_iter().map(Some).collect::<Vec<_>>())),
                ))
            };
            let attnums: Vec<Vec<i16>> = keys
                .iter()
                .map(|k| k.columns.iter().map(|(a, _)| *a).collect())
                .collect();
            let widths: Vec<i16> = keys.iter().map(|k| k.columns.len() as i16).collect();
            (
                vec![
                    field("indexrelid", Int64),
                    field("indrelid", Int64),
                    field("indnatts", Int16),
                    field("indnkeyatts", Int16),
                    field("indisunique", Boolean),
                    field("indnullsnotdistinct", Boolean),
                    field("indisprimary", Boolean),
                    field("indisexclusion", Boolean),
                    field("indimmediate", Boolean),
                    field("indisclustered", Boolean),
                    field("indisvalid", Boolean),
                    field("indcheckxmin", Boolean),
                    field("indisready", Boolean),
                    field("indislive", Boolean),
                    field("indisreplident", Boolean),
                    field("indkey", List(Arc::new(Field::new("item", Int16, true)))),
                    field(
                        "indcollation",
                        List(Arc::new(Field::new("item", Int64, true))),
                    ),
                    field("indclass", List(Arc::new(Field::new("item", Int64, true)))),
                    field("indoption", List(Arc::new(Field::new("item", Int16, true)))),
                    field("indexprs", Utf8),
                    field("indpred", Utf8),
                ],
                vec![
                    i64s(keys.iter().map(|k| k.index_oid).collect()),
                    i64s(keys.iter().map(|k| k.table_oid).collect()),
                    Arc::new(Int16Array::from(widths.clone())),
                    Arc::new(Int16Array::from(widths)),
                    bools(n, true),
                    bools(n, false),
                    bools(n, true),
                    bools(n, false),
                    bools(n, true),
                    bools(n, false),
                    bools(n, true),
                    bools(n, false),
                    bools(n, true),
                    bools(n, true),
                    bools(n, false),
                    int2s(attnums.clone()),
                    oids(attnums.iter().map(|a| vec![0; a.len()]).collect()),
                    oids(attnums.iter().map(|a| vec![0; a.len()]).collect()),
                    int2s(attnums.iter().map(|a| vec![0; a.len()]).collect()),
                    Arc::new(StringArray::from(vec![None::<&str>; n])),
                    Arc::new(StringArray::from(vec![None::<&str>; n])),
                ],
            )
        }
        "pg_constraint" => {
            let keys = primary_keys(relations);
            let n = keys.len();
            let conkey: ArrayRef = Arc::new(arrow::array::ListArray::from_iter_primitive::<
                arrow::datatypes::Int16Type,
                _,
                _,
            >(
                keys.iter()
                    .map(|k| Some(k.columns.iter().map(|(a, _)| Some(*a)).collect::<Vec<_>>())),
            ));
            let int2_list = List(Arc::new(Field::new("item", Int16, true)));
            (
                vec![
                    field("oid", Int64),
                    field("conname", Utf8),
                    field("connamespace", Int64),
                    field("contype", Utf8),
                    field("condeferrable", Boolean),
                    field("condeferred", Boolean),
                    field("convalidated", Boolean),
                    field("conrelid", Int64),
                    field("contypid", Int64),
                    field("conindid", Int64),
                    field("conparentid", Int64),
                    field("confrelid", Int64),
                    field("confupdtype", Utf8),
                    field("confdeltype", Utf8),
                    field("confmatchtype", Utf8),
                    field("conislocal", Boolean),
                    field("coninhcount", Int32),
                    field("connoinherit", Boolean),
                    field("conkey", int2_list.clone()),
                    field("confkey", int2_list.clone()),
                ],
                vec![
                    i64s(keys.iter().map(|k| k.constraint_oid).collect()),
                    s(keys.iter().map(|k| k.name.clone()).collect()),
                    i64s(vec![PUBLIC_OID; n]),
                    texts(n, "p"),
                    bools(n, false),
                    bools(n, false),
                    bools(n, true),
                    i64s(keys.iter().map(|k| k.table_oid).collect()),
                    i64s(vec![0; n]),
                    i64s(keys.iter().map(|k| k.index_oid).collect()),
                    i64s(vec![0; n]),
                    i64s(vec![0; n]),
                    texts(n, " "),
                    texts(n, " "),
                    texts(n, " "),
                    bools(n, true),
                    Arc::new(Int32Array::from(vec![0; n])),
                    bools(n, true),
                    conkey,
                    arrow::array::new_null_array(&int2_list, n),
                ],
            )
        }
        "pg_database" => (
            vec![
                field("oid", Int64),
                field("datname", Utf8),
                field("datdba", Int64),
                field("encoding", Int32),
                field("datlocprovider", Utf8),
                field("datcollate", Utf8),
                field("datctype", Utf8),
                field("daticulocale", Utf8),
                field("datallowconn", Boolean),
                field("datacl", List(Arc::new(Field::new("item", Utf8, true)))),
                field("dattablespace", Int64),
                field("datistemplate", Boolean),
                field("datconnlimit", Int32),
            ],
            vec![
                i64s(vec![16_381]),
                s(vec!["sluice".into()]),
                i64s(vec![10]),
                Arc::new(Int32Array::from(vec![6])),
                s(vec!["c".into()]),
                s(vec!["C".into()]),
                s(vec!["C".into()]),
                Arc::new(StringArray::from(vec![None::<&str>])),
                bools(1, true),
                arrow::array::new_null_array(&List(Arc::new(Field::new("item", Utf8, true))), 1),
                i64s(vec![DEFAULT_TABLESPACE_OID]),
                bools(1, false),
                Arc::new(Int32Array::from(vec![-1])),
            ],
        ),
        "pg_tablespace" => (
            vec![
                field("oid", Int64),
                field("spcname", Utf8),
                field("spcowner", Int64),
            ],
            vec![
                i64s(vec![DEFAULT_TABLESPACE_OID]),
                s(vec!["pg_default".into()]),
                i64s(vec![10]),
            ],
        ),
        "pg_roles" | "pg_user" => {
            let name = if table == "pg_user" {
                "usename"
            } else {
                "rolname"
            };
            let mut users = relations.users();
            if users.is_empty() {
                // Without users (trust), the one every client is.
                users.push(crate::auth::User {
                    name: "sluice".into(),
                    verifier: None,
                    superuser: true,
                    login: true,
                });
            }
            let n = users.len();
            let superuser: Vec<bool> = users.iter().map(|u| u.superuser).collect();
            (
                vec![
                    field("oid", Int64),
                    field(name, Utf8),
                    field("rolsuper", Boolean),
                    field("rolinherit", Boolean),
                    field("rolcreaterole", Boolean),
                    field("rolcreatedb", Boolean),
                    field("rolcanlogin", Boolean),
                    field("rolreplication", Boolean),
                    field("rolbypassrls", Boolean),
                    field("rolconnlimit", Int32),
                    field("rolvaliduntil", Utf8),
                    field("rolpassword", Utf8),
                ],
                vec![
                    i64s(users.iter().map(|u| role_oid(&u.name)).collect()),
                    s(users.iter().map(|u| u.name.clone()).collect()),
                    Arc::new(BooleanArray::from(superuser.clone())),
                    bools(n, true),
                    Arc::new(BooleanArray::from(superuser.clone())),
                    Arc::new(BooleanArray::from(superuser.clone())),
                    Arc::new(BooleanArray::from(
                        users.iter().map(|u| u.login).collect::<Vec<_>>(),
                    )),
                    bools(n, false),
                    Arc::new(BooleanArray::from(superuser)),
                    Arc::new(Int32Array::from(vec![-1; n])),
                    Arc::new(StringArray::from(vec![None::<&str>; n])),
                    // Postgres shows the password as asterisks.
                    Arc::new(StringArray::from(
                        users
                            .iter()
                            .map(|u| u.verifier.as_ref().map(|_| "********"))
                            .collect::<Vec<_>>(),
                    )),
                ],
            )
        }
        "pg_settings" => {
            let n = SETTINGS.len();
            (
                vec![
                    field("name", Utf8),
                    field("setting", Utf8),
                    field("unit", Utf8),
                    field("category", Utf8),
                    field("short_desc", Utf8),
                    field("vartype", Utf8),
                    field("source", Utf8),
                    field("boot_val", Utf8),
                    field("reset_val", Utf8),
                ],
                vec![
                    s(SETTINGS.iter().map(|(n, _, _)| n.to_string()).collect()),
                    s(SETTINGS.iter().map(|(_, v, _)| v.to_string()).collect()),
                    Arc::new(StringArray::from(vec![None::<&str>; n])),
                    texts(n, "Preset Options"),
                    texts(n, ""),
                    s(SETTINGS.iter().map(|(_, _, t)| t.to_string()).collect()),
                    texts(n, "default"),
                    s(SETTINGS.iter().map(|(_, v, _)| v.to_string()).collect()),
                    s(SETTINGS.iter().map(|(_, v, _)| v.to_string()).collect()),
                ],
            )
        }
        other => {
            // Catalogs psql reads that are empty in Sluice.
            let (_, columns) = EMPTY_CATALOGS.iter().find(|(t, _)| *t == other)?;
            let fields: Vec<Field> = columns
                .split_whitespace()
                .map(|c| {
                    let (name, kind) = c.split_once(':').expect("name:type");
                    let t = match kind {
                        "o" => Int64,
                        "b" => Boolean,
                        "i" => Int32,
                        "h" => Int16,
                        "l" => List(Arc::new(Field::new("item", Utf8, true))),
                        _ => Utf8,
                    };
                    field(name, t)
                })
                .collect();
            let columns = fields
                .iter()
                .map(|f| arrow::array::new_empty_array(f.data_type()))
                .collect();
            (fields, columns)
        }
    };
    Some((Arc::new(Schema::new(fields)), columns))
}

/// `pg_catalog`: its tables built from the catalog at each query,
/// `pg_cursors` read from the querying session.
pub fn schema(relations: Weak<dyn Relations>) -> BuiltSchema {
    BuiltSchema::new(
        "pg_catalog",
        TABLES,
        build,
        &[("pg_cursors", || Arc::new(Cursors))],
        relations,
    )
}

/// `pg_cursors`: the querying session's open cursors (from its [`Scope`]).
#[derive(Debug)]
struct Cursors;

impl Cursors {
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            field("name", DataType::Utf8),
            field("statement", DataType::Utf8),
            field("is_holdable", DataType::Boolean),
            field("is_binary", DataType::Boolean),
            field("is_scrollable", DataType::Boolean),
            field(
                "creation_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            ),
        ]))
    }
}

#[async_trait]
impl TableProvider for Cursors {
    fn schema(&self) -> SchemaRef {
        Cursors::schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::View
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let cursors = state
            .config()
            .get_extension::<crate::query::Scope>()
            .map(|s| s.cursors.clone())
            .unwrap_or_default();
        let n = cursors.len();
        let batch = RecordBatch::try_new(
            Cursors::schema(),
            vec![
                s(cursors.iter().map(|c| c.name.clone()).collect()),
                s(cursors.iter().map(|c| c.statement.clone()).collect()),
                Arc::new(BooleanArray::from(
                    cursors.iter().map(|c| c.holdable).collect::<Vec<_>>(),
                )),
                bools(n, false),
                Arc::new(BooleanArray::from(
                    cursors.iter().map(|c| c.scrollable).collect::<Vec<_>>(),
                )),
                Arc::new(
                    arrow::array::TimestampMicrosecondArray::from(vec![None::<i64>; n])
                        .with_timezone("+00:00"),
                ),
            ],
        )?;
        MemTable::try_new(Cursors::schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// A catalog function with a fixed result type; functions are identified
/// by name.
#[derive(Debug)]
struct PgFunction {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: fn(&[ColumnarValue], usize) -> DfResult<ColumnarValue>,
}

impl PartialEq for PgFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for PgFunction {}

impl std::hash::Hash for PgFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        (self.body)(&args.args, args.number_rows)
    }
}

/// The oids Postgres gives its own catalog tables (what `'pg_class'::regclass`
/// is, as clients compare `classoid` with it).
const CATALOG_OIDS: &[(&str, i64)] = &[
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", 1259),
    ("pg_authid", 1260),
    ("pg_database", 1262),
    ("pg_am", 2601),
    ("pg_attrdef", 2604),
    ("pg_constraint", 2606),
    ("pg_description", 2609),
    ("pg_index", 2610),
    ("pg_inherits", 2611),
    ("pg_namespace", 2615),
    ("pg_rewrite", 2618),
    ("pg_trigger", 2620),
];

/// `regclass(x)` and `regtype(x)`, what `x::regclass` and `x::regtype`
/// become: an oid (a number) gives its name, a name its oid, as Postgres's
/// reg types print and compare.
#[derive(Debug)]
struct RegName {
    name: &'static str,
    relations: Weak<dyn Relations>,
    signature: Signature,
}

impl PartialEq for RegName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RegName {}

impl std::hash::Hash for RegName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl RegName {
    /// The oid of a relation by its (possibly qualified) name.
    fn relation(&self, name: &str) -> Option<i64> {
        let name = name.trim_matches('"');
        let bare = name.strip_prefix("pg_catalog.").unwrap_or(name);
        if let Some((_, oid)) = CATALOG_OIDS.iter().find(|(n, _)| *n == bare) {
            return Some(*oid);
        }
        let bare = name.strip_prefix("public.").unwrap_or(name);
        let relations = self.relations.upgrade()?;
        relations.relation(bare).map(|_| relation_oid(bare))
    }

    fn relation_name(&self, oid: i64) -> Option<String> {
        if let Some((name, _)) = CATALOG_OIDS.iter().find(|(_, o)| *o == oid) {
            return Some(name.to_string());
        }
        let relations = self.relations.upgrade()?;
        relations
            .relation_names()
            .into_iter()
            .find(|n| relation_oid(n) == oid)
    }
}

impl ScalarUDFImpl for RegName {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match arg_types.first() {
            Some(t) if t.is_integer() => DataType::Utf8,
            _ => DataType::Int64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let by_oid = args.args[0].data_type().is_integer();
        let returns = if by_oid {
            DataType::Utf8
        } else {
            DataType::Int64
        };
        map_first(&args.args, args.number_rows, returns, |v| {
            if by_oid {
                let oid = as_i64(v);
                ScalarValue::Utf8(oid.and_then(|oid| match self.name {
                    "regclass" => self.relation_name(oid),
                    _ => format_type(oid, -1),
                }))
            } else {
                let name = match v {
                    ScalarValue::Utf8(Some(n)) => Some(n.as_str()),
                    _ => None,
                };
                ScalarValue::Int64(name.and_then(|n| match self.name {
                    "regclass" => self.relation(n),
                    _ => type_oid(n),
                }))
            }
        })
    }
}

/// `pg_get_viewdef(oid)` (a materialized view's query),
/// `pg_get_constraintdef(oid)` and `pg_get_indexdef(oid)` (of a primary
/// key), as Postgres writes them.
#[derive(Debug)]
struct Definition {
    name: &'static str,
    relations: Weak<dyn Relations>,
    signature: Signature,
}

impl PartialEq for Definition {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Definition {}

impl std::hash::Hash for Definition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl Definition {
    /// Every object of this function's kind: its oid and definition.
    fn definitions(&self, relations: &dyn Relations) -> Vec<(i64, String)> {
        match self.name {
            "pg_get_viewdef" => relations
                .relation_names()
                .into_iter()
                .filter_map(|name| {
                    let query = relations.view_query(&name)?;
                    Some((relation_oid(&name), format!(" {query};")))
                })
                .collect(),
            "pg_get_constraintdef" => primary_keys(relations)
                .into_iter()
                .map(|k| {
                    (
                        k.constraint_oid,
                        format!("PRIMARY KEY ({})", k.column_list()),
                    )
                })
                .collect(),
            _ => primary_keys(relations)
                .into_iter()
                .map(|k| (k.index_oid, k.index_definition()))
                .collect(),
        }
    }
}

impl ScalarUDFImpl for Definition {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(relations) = self.relations.upgrade() else {
            return Ok(text(None));
        };
        if self.name == "pg_get_indexdef" && args.args.len() >= 2 {
            return index_column(relations.as_ref(), &args.args, args.number_rows);
        }
        let definitions = self.definitions(relations.as_ref());
        map_first(&args.args, args.number_rows, DataType::Utf8, |v| {
            let oid = as_i64(v);
            ScalarValue::Utf8(
                definitions
                    .iter()
                    .find(|(o, _)| Some(*o) == oid)
                    .map(|(_, d)| d.clone()),
            )
        })
    }
}

/// `pg_get_indexdef(oid, column, pretty)`: the index's `column`th key
/// column's name (its whole definition for column 0).
fn index_column(
    relations: &dyn Relations,
    args: &[ColumnarValue],
    rows: usize,
) -> DfResult<ColumnarValue> {
    let keys = primary_keys(relations);
    let arrays = ColumnarValue::values_to_arrays(&args[..2])?;
    let rows = rows.max(arrays[0].len());
    let out: StringArray = (0..arrays[0].len().min(rows))
        .map(|i| {
            let oid = as_i64(&ScalarValue::try_from_array(&arrays[0], i).ok()?)?;
            let column = as_i64(&ScalarValue::try_from_array(&arrays[1], i).ok()?)?;
            let key = keys.iter().find(|k| k.index_oid == oid)?;
            if column == 0 {
                return Some(key.index_definition());
            }
            key.columns
                .get(usize::try_from(column).ok()?.checked_sub(1)?)
                .map(|(_, name)| quote_name(name))
        })
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out)))
}

/// Applies `f` to the first argument, value by value; the results are of
/// type `returns`.
fn map_first(
    args: &[ColumnarValue],
    rows: usize,
    returns: DataType,
    f: impl Fn(&ScalarValue) -> ScalarValue,
) -> DfResult<ColumnarValue> {
    match &args[0] {
        ColumnarValue::Scalar(v) => Ok(ColumnarValue::Scalar(f(v))),
        ColumnarValue::Array(a) if a.is_empty() => Ok(ColumnarValue::Array(
            arrow::array::new_empty_array(&returns),
        )),
        ColumnarValue::Array(a) => {
            let values = (0..rows.min(a.len()))
                .map(|i| ScalarValue::try_from_array(a, i).map(|v| f(&v)))
                .collect::<DfResult<Vec<_>>>()?;
            Ok(ColumnarValue::Array(ScalarValue::iter_to_array(values)?))
        }
    }
}

fn as_i64(v: &ScalarValue) -> Option<i64> {
    match v.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(x) => x,
        _ => None,
    }
}

fn text(v: Option<&str>) -> ColumnarValue {
    ColumnarValue::Scalar(ScalarValue::Utf8(v.map(|s| s.to_string())))
}

/// Registers the functions psql calls.
pub fn register_functions(ctx: &SessionContext, relations: Weak<dyn Relations>) {
    for name in ["regclass", "regtype"] {
        ctx.register_udf(ScalarUDF::from(RegName {
            name,
            relations: relations.clone(),
            signature: Signature::any(1, Volatility::Stable),
        }));
    }
    for name in ["pg_get_viewdef", "pg_get_constraintdef", "pg_get_indexdef"] {
        ctx.register_udf(ScalarUDF::from(Definition {
            name,
            relations: relations.clone(),
            signature: Signature::variadic_any(Volatility::Stable),
        }));
    }
    // Any arguments, or none (`version()`).
    let any = || {
        Signature::one_of(
            vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
            Volatility::Stable,
        )
    };
    let functions = vec![
        PgFunction {
            name: "pg_get_userbyid",
            signature: any(),
            returns: DataType::Utf8,
            body: |_, _| Ok(text(Some("sluice"))),
        },
        PgFunction {
            name: "pg_table_is_visible",
            signature: any(),
            returns: DataType::Boolean,
            body: |args, rows| {
                map_first(args, rows, DataType::Boolean, |v| {
                    ScalarValue::Boolean(
                        as_i64(v).map(|o| (FIRST_USER_OID..SYSTEM_TABLE_OID).contains(&o)),
                    )
                })
            },
        },
        PgFunction {
            name: "format_type",
            signature: any(),
            returns: DataType::Utf8,
            body: |args, rows| {
                let typmod = match args.get(1) {
                    Some(ColumnarValue::Array(a)) => Some(a.clone()),
                    _ => None,
                };
                let scalar_mod = match args.get(1) {
                    Some(ColumnarValue::Scalar(v)) => as_i64(v).unwrap_or(-1) as i32,
                    _ => -1,
                };
                match &args[0] {
                    ColumnarValue::Scalar(v) => Ok(text(
                        as_i64(v)
                            .and_then(|o| format_type(o, scalar_mod))
                            .as_deref(),
                    )),
                    ColumnarValue::Array(a) => {
                        let out: StringArray = (0..rows.min(a.len()))
                            .map(|i| {
                                let oid = ScalarValue::try_from_array(a, i)
                                    .ok()
                                    .and_then(|v| as_i64(&v))?;
                                let m = match &typmod {
                                    Some(t) => ScalarValue::try_from_array(t, i)
                                        .ok()
                                        .and_then(|v| as_i64(&v))
                                        .unwrap_or(-1)
                                        as i32,
                                    None => scalar_mod,
                                };
                                format_type(oid, m)
                            })
                            .collect();
                        Ok(ColumnarValue::Array(Arc::new(out)))
                    }
                }
            },
        },
        PgFunction {
            name: "pg_get_expr",
            signature: any(),
            returns: DataType::Utf8,
            body: |_, _| Ok(text(None)),
        },
        PgFunction {
            name: "obj_description",
            signature: any(),
            returns: DataType::Utf8,
            body: |_, _| Ok(text(None)),
        },
        PgFunction {
            name: "col_description",
            signature: any(),
            returns: DataType::Utf8,
            body: |_, _| Ok(text(None)),
        },
        PgFunction {
            name: "shobj_description",
            signature: any(),
            returns: DataType::Utf8,
            body: |_, _| Ok(text(None)),
        },
        PgFunction {
            name: "pg_encoding_to_char",
            signature: any(),
            returns: DataType::Utf8,
            body: |_, _| Ok(text(Some("UTF8"))),
        },
        PgFunction {
            name: "quote_ident",
            signature: any(),
            returns: DataType::Utf8,
            body: |args, rows| {
                map_first(args, rows, DataType::Utf8, |v| match v {
                    ScalarValue::Utf8(Some(s)) => ScalarValue::Utf8(Some(
                        if s.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                        {
                            s.clone()
                        } else {
                            format!("\"{}\"", s.replace('"', "\"\""))
                        },
                    )),
                    _ => ScalarValue::Utf8(None),
                })
            },
        },
        PgFunction {
            name: "current_schema",
            signature: any(),
            returns: DataType::Utf8,
            body: |_, _| Ok(text(Some("public"))),
        },
        PgFunction {
            name: "current_database",
            signature: any(),
            returns: DataType::Utf8,
            body: |_, _| Ok(text(Some("sluice"))),
        },
        PgFunction {
            name: "has_table_privilege",
            signature: any(),
            returns: DataType::Boolean,
            body: |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))),
        },
        PgFunction {
            name: "pg_type_is_visible",
            signature: any(),
            returns: DataType::Boolean,
            body: |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))),
        },
        PgFunction {
            name: "pg_relation_is_publishable",
            signature: any(),
            returns: DataType::Boolean,
            body: |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(false)))),
        },
        PgFunction {
            name: "has_schema_privilege",
            signature: any(),
            returns: DataType::Boolean,
            body: |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))),
        },
        PgFunction {
            name: "pg_size_pretty",
            signature: any(),
            returns: DataType::Utf8,
            body: |args, rows| {
                map_first(args, rows, DataType::Utf8, |v| {
                    ScalarValue::Utf8(as_i64(v).map(size_pretty))
                })
            },
        },
        PgFunction {
            name: "like_escape",
            signature: any(),
            returns: DataType::Utf8,
            body: |args, rows| {
                let escape = match args.get(1) {
                    Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(e)))) => e.chars().next(),
                    _ => None,
                };
                map_first(args, rows, DataType::Utf8, |v| match v {
                    ScalarValue::Utf8(Some(p)) => ScalarValue::Utf8(Some(like_escape(p, escape))),
                    _ => ScalarValue::Utf8(None),
                })
            },
        },
        PgFunction {
            name: "to_regtype",
            signature: any(),
            returns: DataType::Int64,
            body: |args, rows| {
                map_first(args, rows, DataType::Int64, |v| {
                    ScalarValue::Int64(match v {
                        ScalarValue::Utf8(Some(name)) => type_oid(name),
                        _ => None,
                    })
                })
            },
        },
        PgFunction {
            name: "version",
            signature: any(),
            returns: DataType::Utf8,
            body: |_, _| {
                Ok(text(Some(concat!(
                    "PostgreSQL 15.0 (Sluice ",
                    env!("CARGO_PKG_VERSION"),
                    ")"
                ))))
            },
        },
    ];
    for f in functions {
        ctx.register_udf(ScalarUDF::from(f));
    }
    // Definitions of objects Sluice does not have (triggers, rules,
    // statistics, partitions): always NULL.
    // Privileges: every user may read everything (Sluice has no grants).
    for name in [
        "has_database_privilege",
        "has_column_privilege",
        "has_any_column_privilege",
        "has_function_privilege",
        "has_sequence_privilege",
        "has_tablespace_privilege",
        "pg_has_role",
    ] {
        ctx.register_udf(ScalarUDF::from(PgFunction {
            name,
            signature: Signature::variadic_any(Volatility::Stable),
            returns: DataType::Boolean,
            body: |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))),
        }));
    }
    // Sizes Sluice does not keep per relation: NULL (unknown), which psql
    // shows as blank.
    for name in [
        "pg_table_size",
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_indexes_size",
        "pg_database_size",
        "pg_tablespace_size",
    ] {
        ctx.register_udf(ScalarUDF::from(PgFunction {
            name,
            signature: Signature::variadic_any(Volatility::Stable),
            returns: DataType::Int64,
            body: |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Int64(None))),
        }));
    }
    for name in [
        "pg_get_triggerdef",
        "pg_get_ruledef",
        "pg_get_partkeydef",
        "pg_get_partition_constraintdef",
        "pg_get_statisticsobjdef",
        "pg_get_statisticsobjdef_columns",
        "pg_get_statisticsobjdef_expressions",
    ] {
        ctx.register_udf(ScalarUDF::from(PgFunction {
            name,
            signature: Signature::variadic_any(Volatility::Stable),
            returns: DataType::Utf8,
            body: |_, _| Ok(text(None)),
        }));
    }
}

/// Rewrites Postgres-only syntax of catalog queries for DataFusion.
pub fn rewrite(mut statement: ast::Statement) -> ast::Statement {
    let _ = statement.visit(&mut Rewriter);
    statement
}

struct Rewriter;

fn is_pg_catalog_table(name: &str) -> bool {
    TABLES.contains(&name)
}

/// Whether a SELECT's first FROM item is a catalog table that is always
/// empty: then (psql joins no further tables in a way that could add rows)
/// it returns no rows.
fn starts_with_empty_catalog(select: &ast::Select) -> bool {
    select
        .from
        .first()
        .map(|f| is_empty_catalog(&f.relation))
        .unwrap_or(false)
}

/// Replaces selects over empty catalog tables by `SELECT NULL AS c1, ...
/// WHERE false`, with as many columns: their contents never matter, and
/// they often use Postgres features DataFusion lacks.
fn empty_selects(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::Select(select) if starts_with_empty_catalog(select) => {
            // Keep the column names: ORDER BY may use them.
            let mut names: Vec<String> = Vec::new();
            for (i, item) in select.projection.iter().enumerate() {
                let name = match item {
                    // Named as the query will refer to them: unquoted
                    // names folded to lower case.
                    ast::SelectItem::ExprWithAlias { alias, .. } => {
                        crate::frontend::parser::normalize_ident(alias)
                    }
                    ast::SelectItem::UnnamedExpr(Expr::Identifier(id)) => {
                        crate::frontend::parser::normalize_ident(id)
                    }
                    ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => ids
                        .last()
                        .map(crate::frontend::parser::normalize_ident)
                        .unwrap_or_default(),
                    _ => format!("c{}", i + 1),
                };
                let name = if names.contains(&name) {
                    format!("{name}_{}", i + 1)
                } else {
                    name
                };
                names.push(name);
            }
            let sql = format!(
                "SELECT {} WHERE false",
                names
                    .iter()
                    .map(|n| format!("NULL AS \"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Ok(mut parsed) =
                sqlparser::parser::Parser::new(crate::frontend::parser::dialect())
                    .try_with_sql(&sql)
                    .and_then(|mut p| p.parse_query())
            {
                if let ast::SetExpr::Select(replacement) = parsed.body.as_mut() {
                    std::mem::swap(select, replacement);
                }
            }
        }
        ast::SetExpr::SetOperation { left, right, .. } => {
            empty_selects(left);
            empty_selects(right);
        }
        ast::SetExpr::Query(q) => empty_selects(&mut q.body),
        _ => {}
    }
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        empty_selects(&mut query.body);
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        // pg_catalog is on every search path in Postgres.
        if let [ObjectNamePart::Identifier(id)] = relation.0.as_slice() {
            if id.quote_style.is_none() && is_pg_catalog_table(&id.value.to_lowercase()) {
                relation
                    .0
                    .insert(0, ObjectNamePart::Identifier(ast::Ident::new("pg_catalog")));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // ARRAY(subquery) only decorates psql's output (table options, policy
        // roles) and DataFusion lacks it: a call that uses one becomes NULL
        // (before its arguments are visited).
        if let Expr::Function(f) = expr {
            let is_array_subquery = f.name.to_string().eq_ignore_ascii_case("array")
                && matches!(f.args, FunctionArguments::Subquery(_));
            let uses_one = matches!(&f.args, FunctionArguments::List(l) if l.args.iter().any(|a| a.to_string().to_lowercase().contains("array(select")));
            if is_array_subquery || uses_one {
                *expr = Expr::Value(ast::Value::Null.into());
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let replacement = match expr {
            Expr::BinaryOp {
                op: BinaryOperator::PGCustomBinaryOperator(parts),
                left,
                right,
            } => {
                let op = match parts.last().map(|s| s.as_str()) {
                    Some("~") => BinaryOperator::PGRegexMatch,
                    Some("~*") => BinaryOperator::PGRegexIMatch,
                    Some("!~") => BinaryOperator::PGRegexNotMatch,
                    Some("!~*") => BinaryOperator::PGRegexNotIMatch,
                    Some("=") => BinaryOperator::Eq,
                    Some("<>") => BinaryOperator::NotEq,
                    Some("<") => BinaryOperator::Lt,
                    Some(">") => BinaryOperator::Gt,
                    _ => return ControlFlow::Continue(()),
                };
                Some(Expr::BinaryOp {
                    left: left.clone(),
                    op,
                    right: right.clone(),
                })
            }
            Expr::Collate { expr: inner, .. } => Some((**inner).clone()),
            Expr::Subquery(query) => {
                if reads_an_empty_catalog(query) {
                    Some(Expr::Value(ast::Value::Null.into()))
                } else {
                    aggregate_single_row_subquery(query);
                    None
                }
            }
            Expr::Cast {
                data_type,
                expr: inner,
                ..
            } if matches!(type_name_of(data_type).as_str(), "regclass" | "regtype") => {
                // An oid shown as a name, or a name as its oid.
                let function = type_name_of(data_type);
                Some(call(&function, vec![(**inner).clone()]))
            }
            Expr::Cast {
                data_type,
                expr: inner,
                ..
            } if type_name_of(data_type) == "regproc" => {
                // A function by name (`'pg_catalog.array_in'::regproc`), as
                // pg_type's columns name them: without the schema.
                let mut inner = (**inner).clone();
                if let Expr::Value(v) = &mut inner {
                    if let ast::Value::SingleQuotedString(name) = &mut v.value {
                        *name = name.trim_start_matches("pg_catalog.").to_string();
                    }
                }
                Some(Expr::Cast {
                    kind: ast::CastKind::Cast,
                    expr: Box::new(inner),
                    data_type: ast::DataType::Text,
                    array: false,
                    format: None,
                })
            }
            Expr::Cast { data_type, .. } => {
                let name = type_name_of(data_type);
                let mapped = match name.as_str() {
                    "regprocedure" | "regnamespace" | "regrole" | "text" | "name" | "char" => {
                        Some(ast::DataType::Text)
                    }
                    "oid" => Some(ast::DataType::BigInt(None)),
                    _ => None,
                };
                if let (Some(t), Expr::Cast { data_type, .. }) = (mapped, &mut *expr) {
                    *data_type = t;
                }
                None
            }
            Expr::Function(f) => {
                if let [ObjectNamePart::Identifier(schema), _] = f.name.0.as_slice() {
                    if schema.value.eq_ignore_ascii_case("pg_catalog") {
                        f.name.0.remove(0);
                    }
                }
                generate_subscripts(f).or_else(|| expand_array(f))
            }
            Expr::CompoundFieldAccess { root, access_chain }
                if !matches!(
                    root.as_ref(),
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_)
                ) =>
            {
                // `(record).field`: DataFusion reads a field so only by
                // name, with get_field.
                let mut out = (**root).clone();
                for access in access_chain.iter() {
                    let ast::AccessExpr::Dot(Expr::Identifier(field)) = access else {
                        return ControlFlow::Continue(());
                    };
                    out = call(
                        "get_field",
                        vec![
                            out,
                            Expr::Value(
                                ast::Value::SingleQuotedString(field.value.to_lowercase()).into(),
                            ),
                        ],
                    );
                }
                Some(out)
            }
            _ => None,
        };
        if let Some(r) = replacement {
            *expr = r;
        }
        ControlFlow::Continue(())
    }
}

/// `generate_subscripts(a, dim)` (the subscripts of an array, as rows)
/// becomes `unnest(generate_series(1, array_length(a, dim)))`, which
/// DataFusion runs, in step with another `unnest` of the same array.
fn generate_subscripts(f: &ast::Function) -> Option<Expr> {
    if !f
        .name
        .to_string()
        .eq_ignore_ascii_case("generate_subscripts")
    {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let args: Vec<Expr> = list
        .args
        .iter()
        .map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let [array, dim] = args.as_slice() else {
        return None;
    };
    let length = Expr::Cast {
        kind: ast::CastKind::Cast,
        expr: Box::new(call("array_length", vec![array.clone(), dim.clone()])),
        data_type: ast::DataType::BigInt(None),
        array: false,
        format: None,
    };
    let one = Expr::Value(ast::Value::Number("1".into(), false).into());
    Some(call(
        "unnest",
        vec![call("generate_series", vec![one, length])],
    ))
}

/// `information_schema._pg_expandarray(a)` (a row per element: the value
/// `x` and its subscript `n`, as JDBC's metadata queries read keys) becomes
/// `unnest(pg_expandarray(a))`, a struct per element.
fn expand_array(f: &ast::Function) -> Option<Expr> {
    let name = f.name.to_string().to_ascii_lowercase();
    if name != "information_schema._pg_expandarray" && name != "_pg_expandarray" {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(array))] = list.args.as_slice()
    else {
        return None;
    };
    Some(call(
        "unnest",
        vec![call("pg_expandarray", vec![array.clone()])],
    ))
}

/// A cast's type name, lower case, without `pg_catalog.` or quotes.
fn type_name_of(data_type: &ast::DataType) -> String {
    data_type
        .to_string()
        .to_lowercase()
        .trim_start_matches("pg_catalog.")
        .trim_matches('"')
        .to_string()
}

/// Whether a FROM item is a catalog table that is always empty in Sluice.
fn is_empty_catalog(factor: &ast::TableFactor) -> bool {
    match factor {
        ast::TableFactor::Table { name, .. } => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| {
                EMPTY_CATALOGS
                    .iter()
                    .any(|(t, _)| *t == i.value.to_lowercase())
            })
            .unwrap_or(false),
        _ => false,
    }
}

/// Whether a scalar subquery reads, as a FROM item, a catalog table that is
/// always empty: then it is NULL, whatever its correlation.
fn reads_an_empty_catalog(query: &ast::Query) -> bool {
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    select
        .from
        .iter()
        .any(|item| is_empty_catalog(&item.relation))
}

/// A scalar subquery over the catalog returns at most one row in Postgres;
/// DataFusion wants that stated as an aggregate when it is correlated, so
/// `(SELECT e FROM ...)` becomes `(SELECT max(e) FROM ...)`.
fn aggregate_single_row_subquery(query: &mut ast::Query) {
    if !query.to_string().contains("pg_catalog.") {
        return;
    }
    let ast::SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    if select.projection.len() != 1
        || !matches!(select.group_by, ast::GroupByExpr::Expressions(ref e, _) if e.is_empty())
    {
        return;
    }
    let wrap = |e: &mut Expr| {
        let inner = e.clone();
        if matches!(&inner, Expr::Function(f) if ["max", "min", "count", "sum", "avg"].contains(&f.name.to_string().to_lowercase().as_str()))
        {
            return;
        }
        let sql = format!("max({inner})");
        if let Ok(parsed) = sqlparser::parser::Parser::new(crate::frontend::parser::dialect())
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_expr())
        {
            *e = parsed;
        }
    };
    match &mut select.projection[0] {
        ast::SelectItem::UnnamedExpr(e) => wrap(e),
        ast::SelectItem::ExprWithAlias { expr, .. } => wrap(expr),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_psql_syntax() {
        let sql = "SELECT c.oid FROM pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(kpi)$' COLLATE pg_catalog.default \
                   AND pg_catalog.pg_table_is_visible(c.oid) AND c.oid::pg_catalog.regclass::pg_catalog.text <> ''";
        let stmt = crate::frontend::parser::parse_one(sql).unwrap();
        let crate::frontend::parser::Statement::Query(q) = stmt.statement else {
            panic!()
        };
        let out = rewrite(*q).to_string();
        assert!(out.contains("FROM pg_catalog.pg_class"), "{out}");
        assert!(out.contains("c.relname ~ '^(kpi)$'"), "{out}");
        assert!(out.contains(" pg_table_is_visible(c.oid)"), "{out}");
        assert!(!out.contains("COLLATE"), "{out}");
        assert!(out.contains("::TEXT"), "{out}");
    }

    #[test]
    fn sizes_are_pretty_as_postgres_prints_them() {
        // Values from Postgres 15's pg_size_pretty.
        for (size, text) in [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (1_000_000, "977 kB"),
            (20_971_519, "20 MB"),
            (20_971_520, "20 MB"),
            (-10_240, "-10 kB"),
            (1i64 << 50, "1024 TB"),
            (1i64 << 60, "1024 PB"),
        ] {
            assert_eq!(size_pretty(size), text, "{size}");
        }
    }

    #[test]
    fn like_escapes_become_backslashes() {
        assert_eq!(like_escape("pg/_%", Some('/')), "pg\\_%");
        assert_eq!(like_escape("a\\b//c", Some('/')), "a\\\\b\\/c");
        assert_eq!(like_escape("a\\b", None), "a\\\\b");
    }

    #[test]
    fn format_type_matches_postgres() {
        assert_eq!(format_type(20, -1).as_deref(), Some("bigint"));
        assert_eq!(
            format_type(1700, (10 << 16 | 2) + 4).as_deref(),
            Some("numeric(10,2)")
        );
        assert_eq!(
            format_type(1184, 3).as_deref(),
            Some("timestamp(3) with time zone")
        );
    }
}
