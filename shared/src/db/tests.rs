//! The pool's tests: URLs, SQLite durability and build options, placeholders,
//! run against in-memory and file databases.

use super::*;

#[test]
fn sqlite_urls_create_their_file() {
    let dir = std::env::temp_dir().join(format!("db-url-{}", std::process::id()));
    let url = format!("sqlite://{}/x.db", dir.display());
    assert_eq!(sqlite_url(&url).expect("ok"), format!("{url}?mode=rwc"));
    assert!(dir.is_dir());
    let ro = format!("{url}?mode=ro");
    assert_eq!(sqlite_url(&ro).expect("ok"), ro);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn sqlite_durability_follows_the_option() {
    let dir = std::env::temp_dir().join(format!("db-sync-{}", std::process::id()));
    for (sync, expected) in [(SqliteSync::Normal, 1_i64), (SqliteSync::Full, 2)] {
        let mut options = DbOptions::new(format!("sqlite://{}/{sync:?}.db", dir.display()));
        options.sqlite_synchronous = sync;
        let db = Db::connect(&options).await.expect("open");
        let pragma = || sqlx::query_scalar::<_, i64>("PRAGMA synchronous");
        assert_eq!(
            pragma().fetch_one(db.writer()).await.expect("pragma"),
            expected
        );
        assert_eq!(
            pragma().fetch_one(db.reader()).await.expect("pragma"),
            expected
        );
        // The write connection, outside the pools, too.
        let mut tx = db.begin().await.expect("begin");
        assert!(
            matches!(tx.conn.0, Inner::Inline(_)),
            "a file's writes run inline"
        );
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *tx)
            .await
            .expect("pragma");
        assert_eq!(level, expected, "{sync:?} on the write connection");
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *tx)
            .await
            .expect("pragma");
        assert_eq!(journal, "wal");
        tx.rollback().await.expect("rollback");
        db.close().await;
    }
    std::fs::remove_dir_all(dir).ok();
}

/// STAT4 re-plans every statement whose bound values change once an
/// index is analyzed, and memory statistics take a global mutex on every
/// allocation; `.cargo/config.toml` builds SQLite without either.
#[tokio::test]
async fn sqlite_is_built_without_stat4_or_memory_statistics() {
    let db = Db::connect(&DbOptions::new("sqlite::memory:"))
        .await
        .expect("open");
    let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
        .fetch_all(db.reader())
        .await
        .expect("pragma");
    assert!(
        options.iter().any(|o| o.starts_with("THREADSAFE")),
        "{options:?}"
    );
    assert!(!options.iter().any(|o| o == "ENABLE_STAT4"), "{options:?}");
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "{options:?}"
    );
    db.close().await;
}

#[test]
fn placeholder_rows_number_every_parameter_once() {
    assert_eq!(placeholder_rows(1, 1), "($1)");
    assert_eq!(placeholder_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
}

#[test]
fn only_sqlite_and_postgres_urls_are_accepted() {
    assert_eq!(Backend::of_url("sqlite://a.db").ok(), Some(Backend::Sqlite));
    assert_eq!(
        Backend::of_url("postgres://h/db").ok(),
        Some(Backend::Postgres)
    );
    assert!(Backend::of_url("mysql://h/db").is_err());
}
