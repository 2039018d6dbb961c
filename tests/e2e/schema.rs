//! The migrations of both services, rendered from one source per backend:
//! checksums pinned for databases migrated earlier, and the same schema.

use std::collections::BTreeMap;

use e2e::TestBackend;
use shared::db::{Backend, Db, DbOptions, Migrations};
use sqlx::Row;

const SERVICES: [(&str, Migrations); 2] = [
    ("contract-service", contract_service::store::MIGRATIONS),
    ("feedback-service", feedback_service::store::MIGRATIONS),
];

/// SHA-384 of each script as applied before the two migration trees became
/// one source (`sha384sum migrations/{postgres,sqlite}/*.sql` at 2f8cdc1).
/// sqlx refuses to start on a database whose applied migration's checksum
/// changed, so a rendering must stay byte for byte what it was.
const APPLIED: &[(&str, Backend, i64, &str)] = &[
    (
        "contract-service",
        Backend::Postgres,
        1,
        "5f7fb5483db0a4cea1fd158313e7e550959db8347bb3bb07a209af40eac6b72031f08029e6ae33f09c4bf7c84dbe559e",
    ),
    (
        "contract-service",
        Backend::Postgres,
        2,
        "29a1adda607f6a9558e7a98fbbfe87d9b81995fb6ee053d71f06a808307ad2a1512dbaed75790f9f2d274f752ff7bef6",
    ),
    (
        "contract-service",
        Backend::Postgres,
        3,
        "d613b46c74ed6dccb5b2f1aaddbbcdb37187ea6a711fd8b8e21f42179bf0015cc88016fd8ea732ed1b2bc5188df6e3a5",
    ),
    (
        "contract-service",
        Backend::Sqlite,
        1,
        "d1a3683774a42a694aa7a52465d22a7455dac15150d4419d6afa58c422c1d68399c7856d856721aa2976a4ca8fbf28a2",
    ),
    (
        "contract-service",
        Backend::Sqlite,
        2,
        "29a1adda607f6a9558e7a98fbbfe87d9b81995fb6ee053d71f06a808307ad2a1512dbaed75790f9f2d274f752ff7bef6",
    ),
    (
        "contract-service",
        Backend::Sqlite,
        3,
        "5a71086b338209f8debe6f49ce54b37dd2986e136386d0c6b5b5c859196bb644a85269600a6b9ab441049f6bb4c7b98b",
    ),
    (
        "feedback-service",
        Backend::Postgres,
        1,
        "4506f384891aa683b88736f0784ec85fa88853709d7a57415b23232cc041cd2c017d837ad8058b5d923bc8d9d455077f",
    ),
    (
        "feedback-service",
        Backend::Postgres,
        2,
        "6ad57c867c5cec917331661ccfbff14e4c87fd31dfbce34f1987bf36c9a9a93269b91da2221d7938d32d430b93156c8b",
    ),
    (
        "feedback-service",
        Backend::Postgres,
        3,
        "b55916b6aea59533e892a73a70d5c6f2775d62d0ac98a286fad886d82fd5bc25fd94d39a99b216f2475e7f694db7e85e",
    ),
    (
        "feedback-service",
        Backend::Sqlite,
        1,
        "b104be6582ea7eb130a3cddfe31c40d12840ef2ed0e5ca1e5a291efb6f294e986cee277984e657d21dc01bd70e531f8e",
    ),
    (
        "feedback-service",
        Backend::Sqlite,
        2,
        "6ad57c867c5cec917331661ccfbff14e4c87fd31dfbce34f1987bf36c9a9a93269b91da2221d7938d32d430b93156c8b",
    ),
    (
        "feedback-service",
        Backend::Sqlite,
        3,
        "b55916b6aea59533e892a73a70d5c6f2775d62d0ac98a286fad886d82fd5bc25fd94d39a99b216f2475e7f694db7e85e",
    ),
];

#[test]
fn rendered_migrations_keep_the_checksums_already_applied() {
    let mut seen = 0;
    for (service, migrations) in SERVICES {
        for backend in [Backend::Postgres, Backend::Sqlite] {
            for (version, description, sql) in migrations.rendered(backend) {
                assert!(
                    !sql.contains("{{") && !sql.contains("-- ["),
                    "{service} {backend:?} migration {version} keeps a mark"
                );
                let checksum = sqlx::migrate::Migration::new(
                    version,
                    description.into(),
                    sqlx::migrate::MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)),
                    false,
                )
                .checksum;
                let hex: String = checksum.iter().map(|b| format!("{b:02x}")).collect();
                let pinned = APPLIED
                    .iter()
                    .find(|(s, b, v, _)| *s == service && *b == backend && *v == version)
                    .map(|(_, _, _, sum)| *sum);
                assert_eq!(
                    Some(hex.as_str()),
                    pinned,
                    "{service} {backend:?} migration {version} no longer matches what databases applied"
                );
                seen += 1;
            }
        }
    }
    assert_eq!(seen, APPLIED.len(), "every pinned migration is rendered");
}

/// One table as both backends describe it, in words they share.
#[derive(Debug, Default, PartialEq)]
struct Table {
    /// column → (type family, NOT NULL, part of the primary key)
    columns: BTreeMap<String, (&'static str, bool, bool)>,
    /// unique column lists (primary key, UNIQUE constraints, unique indexes)
    unique: Vec<String>,
    /// named indexes (not those behind constraints) → (columns, unique, partial)
    indexes: BTreeMap<String, (String, bool, bool)>,
    /// (column, referenced table, referenced column)
    foreign_keys: Vec<(String, String, String)>,
    checks: usize,
}

fn family(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "smallint" => "integer",
        "text" => "text",
        "blob" | "bytea" => "bytes",
        other => panic!("a column type the schema comparison does not know: {other}"),
    }
}

#[tokio::test]
async fn both_backends_build_the_same_schema() {
    let Some(postgres) = TestBackend::postgres() else {
        return;
    };
    for (service, migrations) in SERVICES {
        let sqlite = migrated(&TestBackend::Sqlite, &migrations).await;
        let pg = migrated(&postgres, &migrations).await;
        let lite = sqlite_schema(&sqlite).await;
        let post = postgres_schema(&pg).await;
        assert!(
            lite.len() >= 8,
            "{service}: read the SQLite schema: {lite:?}"
        );
        assert_eq!(
            lite.keys().collect::<Vec<_>>(),
            post.keys().collect::<Vec<_>>(),
            "{service}: the same tables"
        );
        for (name, table) in &lite {
            assert_eq!(Some(table), post.get(name), "{service}: table {name}");
        }
        sqlite.close().await;
        pg.close().await;
    }
}

async fn migrated(backend: &TestBackend, migrations: &Migrations) -> Db {
    let url = backend.fresh_database_url().await;
    let db = Db::connect(&DbOptions::new(url)).await.expect("open");
    db.migrate(migrations).await.expect("migrate");
    db
}

async fn strings(db: &Db, sql: &str) -> Vec<Vec<String>> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(db.reader())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.try_get::<String, _>(i)
                        .or_else(|_| row.try_get::<i64, _>(i).map(|n| n.to_string()))
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect()
}

async fn sqlite_schema(db: &Db) -> BTreeMap<String, Table> {
    let mut tables = BTreeMap::new();
    let names = strings(
        db,
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .await;
    for row in names {
        let (name, sql) = (&row[0], &row[1]);
        let mut table = Table {
            checks: sql.matches("CHECK (").count(),
            ..Table::default()
        };
        let mut pk: Vec<(i64, String)> = Vec::new();
        for c in strings(
            db,
            &format!("SELECT name, type, \"notnull\", pk FROM pragma_table_info('{name}')"),
        )
        .await
        {
            let in_pk: i64 = c[3].parse().expect("pk");
            if in_pk > 0 {
                pk.push((in_pk, c[0].clone()));
            }
            // SQLite's INTEGER PRIMARY KEY is NOT NULL whatever it says.
            let not_null = c[2] == "1" || in_pk > 0;
            table
                .columns
                .insert(c[0].clone(), (family(&c[1]), not_null, in_pk > 0));
        }
        pk.sort();
        if !pk.is_empty() {
            table
                .unique
                .push(pk.into_iter().map(|(_, c)| c).collect::<Vec<_>>().join(","));
        }
        for ix in strings(
            db,
            &format!("SELECT name, \"unique\", origin, partial FROM pragma_index_list('{name}')"),
        )
        .await
        {
            let columns = strings(
                db,
                &format!(
                    "SELECT name FROM pragma_index_info('{}') ORDER BY seqno",
                    ix[0]
                ),
            )
            .await
            .into_iter()
            .map(|r| r[0].clone())
            .collect::<Vec<_>>()
            .join(",");
            match ix[2].as_str() {
                "pk" => {}
                "u" => table.unique.push(columns),
                _ => {
                    if ix[1] == "1" && ix[3] == "0" {
                        table.unique.push(columns.clone());
                    }
                    table
                        .indexes
                        .insert(ix[0].clone(), (columns, ix[1] == "1", ix[3] == "1"));
                }
            }
        }
        for fk in strings(
            db,
            &format!("SELECT \"from\", \"table\", \"to\" FROM pragma_foreign_key_list('{name}')"),
        )
        .await
        {
            table
                .foreign_keys
                .push((fk[0].clone(), fk[1].clone(), fk[2].clone()));
        }
        table.unique.sort();
        table.foreign_keys.sort();
        tables.insert(name.clone(), table);
    }
    tables
}

async fn postgres_schema(db: &Db) -> BTreeMap<String, Table> {
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for c in strings(
        db,
        "SELECT CAST(c.table_name AS TEXT), CAST(c.column_name AS TEXT), CAST(c.data_type AS TEXT), \
         CAST(c.is_nullable AS TEXT), \
         CAST(EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
              AND a.attnum = ANY (i.indkey) WHERE i.indisprimary \
              AND i.indrelid = CAST(c.table_name AS regclass) AND a.attname = c.column_name) AS TEXT) \
         FROM information_schema.columns c WHERE c.table_schema = current_schema() \
         AND c.table_name <> '_sqlx_migrations'",
    )
    .await
    {
        tables.entry(c[0].clone()).or_default().columns.insert(
            c[1].clone(),
            (family(&c[2]), c[3] == "NO", c[4] == "true"),
        );
    }
    for ix in strings(
        db,
        "SELECT CAST(t.relname AS TEXT), CAST(x.relname AS TEXT), \
         CAST(i.indisunique AS TEXT), CAST(i.indpred IS NOT NULL AS TEXT), \
         CAST(EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) AS TEXT), \
         (SELECT string_agg(CAST(a.attname AS TEXT), ',' ORDER BY k.n) \
            FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) \
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) \
         FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class x ON x.oid = i.indexrelid \
         JOIN pg_namespace s ON s.oid = t.relnamespace \
         WHERE s.nspname = current_schema() AND t.relname <> '_sqlx_migrations'",
    )
    .await
    {
        let table = tables.entry(ix[0].clone()).or_default();
        let (unique, partial, constraint, columns) = (ix[2] == "true", ix[3] == "true", ix[4] == "true", ix[5].clone());
        if constraint {
            table.unique.push(columns);
        } else {
            if unique && !partial {
                table.unique.push(columns.clone());
            }
            table.indexes.insert(ix[1].clone(), (columns, unique, partial));
        }
    }
    for k in strings(
        db,
        "SELECT CAST(t.relname AS TEXT), CAST(k.contype AS TEXT), \
         COALESCE(CAST(a.attname AS TEXT), ''), COALESCE(CAST(r.relname AS TEXT), ''), COALESCE(CAST(ra.attname AS TEXT), '') \
         FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid \
         JOIN pg_namespace s ON s.oid = t.relnamespace \
         LEFT JOIN pg_attribute a ON k.contype = 'f' AND a.attrelid = k.conrelid AND a.attnum = k.conkey[1] \
         LEFT JOIN pg_class r ON r.oid = k.confrelid \
         LEFT JOIN pg_attribute ra ON k.contype = 'f' AND ra.attrelid = k.confrelid AND ra.attnum = k.confkey[1] \
         WHERE s.nspname = current_schema() AND k.contype IN ('c', 'f') AND t.relname <> '_sqlx_migrations'",
    )
    .await
    {
        let table = tables.entry(k[0].clone()).or_default();
        if k[1] == "c" {
            table.checks += 1;
        } else {
            table.foreign_keys.push((k[2].clone(), k[3].clone(), k[4].clone()));
        }
    }
    for table in tables.values_mut() {
        table.unique.sort();
        table.foreign_keys.sort();
    }
    tables
}
