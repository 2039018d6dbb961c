//! Each service's migrations, written once for both backends: a script is
//! rendered into SQLite's or PostgreSQL's dialect just before it is applied.
//!
//! A script is the SQL both engines run, with a few marks where they differ:
//!
//! | mark | PostgreSQL | SQLite |
//! |---|---|---|
//! | `{{small_int}}` | `SMALLINT` | `INTEGER` |
//! | `{{bytes}}` | `BYTEA` | `BLOB` |
//! | `{{serial_pk}}` | `BIGSERIAL PRIMARY KEY` | `INTEGER PRIMARY KEY AUTOINCREMENT` |
//! | `{{backend}}`, `{{other_backend}}` | `PostgreSQL`, `SQLite` | `SQLite`, `PostgreSQL` |
//!
//! and, for statements with no common form (SQLite cannot alter a CHECK
//! constraint, so it rebuilds the table), blocks of whole lines between a
//! line `-- [postgres]` or `-- [sqlite]` and a line `-- [end]`, kept for that
//! backend only. The mark lines themselves are dropped, so a rendered script
//! is byte for byte what was applied before the two trees became one source:
//! sqlx's checksums of databases migrated earlier still match (the e2e
//! `schema` test pins them).

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::db::Backend;

/// A migration: version, description, SQL with the dialect marks above.
pub type MigrationScript = (i64, &'static str, &'static str);

/// A service's migrations, embedded in its binary.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub scripts: &'static [MigrationScript],
}

impl Migrations {
    pub const fn new(scripts: &'static [MigrationScript]) -> Self {
        Self { scripts }
    }

    /// The scripts as `backend` runs them: version, description, SQL.
    pub fn rendered(&self, backend: Backend) -> impl Iterator<Item = (i64, &'static str, String)> {
        self.scripts
            .iter()
            .map(move |(version, description, sql)| (*version, *description, render(sql, backend)))
    }

    /// sqlx's migrator for `backend`.
    pub(crate) fn migrator(&self, backend: Backend) -> Migrator {
        Migrator::with_migrations(
            self.rendered(backend)
                .map(|(version, description, sql)| {
                    Migration::new(
                        version,
                        description.into(),
                        MigrationType::Simple,
                        // The service's own embedded scripts, not input.
                        AssertSqlSafe(sql).into_sql_str(),
                        false,
                    )
                })
                .collect(),
        )
    }
}

/// `sql` in `backend`'s dialect.
pub fn render(sql: &str, backend: Backend) -> String {
    let (this, other) = match backend {
        Backend::Postgres => ("postgres", "sqlite"),
        Backend::Sqlite => ("sqlite", "postgres"),
    };
    let mut out = String::with_capacity(sql.len());
    let mut skipping = false;
    for line in sql.split_inclusive('\n') {
        match line.trim_end() {
            mark if mark == format!("-- [{this}]") => skipping = false,
            mark if mark == format!("-- [{other}]") => skipping = true,
            "-- [end]" => skipping = false,
            _ if skipping => {}
            _ => out.push_str(&replace_marks(line, backend)),
        }
    }
    out
}

fn replace_marks(line: &str, backend: Backend) -> String {
    let postgres = backend == Backend::Postgres;
    let pick = |pg: &'static str, lite: &'static str| if postgres { pg } else { lite };
    [
        ("{{small_int}}", pick("SMALLINT", "INTEGER")),
        ("{{bytes}}", pick("BYTEA", "BLOB")),
        (
            "{{serial_pk}}",
            pick("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        ),
        ("{{backend}}", pick("PostgreSQL", "SQLite")),
        ("{{other_backend}}", pick("SQLite", "PostgreSQL")),
    ]
    .into_iter()
    .fold(line.to_owned(), |line, (mark, value)| {
        line.replace(mark, value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
-- schema ({{backend}}), like the {{other_backend}} one.
CREATE TABLE t (
    id   {{serial_pk}},
    flag {{small_int}} NOT NULL,
    body {{bytes}} NOT NULL
);
-- [postgres]
ALTER TABLE t ADD CONSTRAINT c CHECK (flag IN (0, 1));
-- [end]
-- [sqlite]
CREATE TABLE t2 (flag INTEGER CHECK (flag IN (0, 1)));
-- [end]
CREATE INDEX t_flag ON t (flag);
";

    #[test]
    fn renders_each_dialect_and_drops_the_other_backends_blocks() {
        assert_eq!(
            render(SCRIPT, Backend::Postgres),
            "\
-- schema (PostgreSQL), like the SQLite one.
CREATE TABLE t (
    id   BIGSERIAL PRIMARY KEY,
    flag SMALLINT NOT NULL,
    body BYTEA NOT NULL
);
ALTER TABLE t ADD CONSTRAINT c CHECK (flag IN (0, 1));
CREATE INDEX t_flag ON t (flag);
"
        );
        assert_eq!(
            render(SCRIPT, Backend::Sqlite),
            "\
-- schema (SQLite), like the PostgreSQL one.
CREATE TABLE t (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    flag INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE t2 (flag INTEGER CHECK (flag IN (0, 1)));
CREATE INDEX t_flag ON t (flag);
"
        );
    }

    #[test]
    fn sql_without_marks_is_unchanged() {
        let sql = "CREATE TABLE plain (id TEXT PRIMARY KEY);\n-- a comment\n";
        assert_eq!(render(sql, Backend::Postgres), sql);
        assert_eq!(render(sql, Backend::Sqlite), sql);
    }
}
