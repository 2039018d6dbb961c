//! Keyset pages: a listing read a page at a time in key order, each page
//! starting after the last key of the one before ([`crate::paging`] makes the tokens).

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, SqlSafeStr};

/// Which page of one key's rows to read (a contract's payments, a
/// freelancer's feedback): a listing's statement takes `key` as `$1`, the
/// last key of the previous page as `$2` (rows after it; `''`, before every
/// id, on the first page) and the most rows to read as `$3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<'a> {
    pub key: &'a str,
    pub after: Option<&'a str>,
    pub limit: i64,
}

impl<'a> Page<'a> {
    pub fn new(key: &'a str, after: Option<&'a str>, limit: i64) -> Self {
        Self { key, after, limit }
    }

    /// `sql` with the page's key, cursor and size bound as `$1`, `$2`, `$3`.
    pub fn query<'q>(&self, sql: impl SqlSafeStr) -> Query<'q, Any, AnyArguments> {
        sqlx::query(sql)
            .bind(self.key)
            .bind(self.after.unwrap_or_default())
            .bind(self.limit)
    }
}

/// A sweep's batch of work due by `now`: a statement takes `now` (as
/// microseconds) as `$1` and the most items to take as `$2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub now: chrono::DateTime<chrono::Utc>,
    pub limit: i64,
}

impl Due {
    pub fn new(now: chrono::DateTime<chrono::Utc>, limit: i64) -> Self {
        Self { now, limit }
    }

    /// `sql` with the instant and the limit bound as `$1`, `$2`.
    pub fn query<'q>(&self, sql: impl SqlSafeStr) -> Query<'q, Any, AnyArguments> {
        sqlx::query(sql)
            .bind(crate::time::to_micros(self.now))
            .bind(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;
    use sqlx::any::{AnyPoolOptions, AnyRow};

    use super::*;
    use crate::db::rows::Table;

    fn name_of(row: &AnyRow) -> Result<String, sqlx::Error> {
        row.try_get("name")
    }

    const PETS: Table<String> = Table::new("pets", "name", name_of);

    #[tokio::test]
    async fn a_table_reads_one_row_and_pages_of_a_key() {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("open");
        sqlx::query("CREATE TABLE pets (id TEXT PRIMARY KEY, owner TEXT, name TEXT)")
            .execute(&pool)
            .await
            .expect("create");
        for (id, owner, name) in [
            ("p1", "ann", "rex"),
            ("p2", "bob", "tom"),
            ("p3", "ann", "kit"),
        ] {
            sqlx::query("INSERT INTO pets (id, owner, name) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(owner)
                .bind(name)
                .execute(&pool)
                .await
                .expect("insert");
        }
        assert_eq!(
            PETS.get(&pool, "p2").await.expect("get"),
            Some("tom".into())
        );
        assert_eq!(PETS.get(&pool, "p9").await.expect("get"), None);
        let page = |after, limit| PETS.page(&pool, "owner = $1", Page::new("ann", after, limit));
        assert_eq!(page(None, 1).await.expect("page"), ["rex"]);
        assert_eq!(page(Some("p1"), 5).await.expect("page"), ["kit"]);
        assert!(page(Some("p3"), 5).await.expect("page").is_empty());
    }
}
