//! The writer's tests: a failed or panicking mutation rolls back alone while
//! its batch commits, and retries replay (in the same batch or a later one).

use std::time::Duration;

use super::*;
use crate::db::{DbOptions, Migrations};

const SCHEMA: &str = "
    CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL);
    CREATE TABLE idempotency_keys (
        caller TEXT NOT NULL, method TEXT NOT NULL, request_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL, response BLOB NOT NULL, created_at BIGINT NOT NULL,
        PRIMARY KEY (caller, method, request_id));
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
        subject_id TEXT NOT NULL, kind TEXT NOT NULL, payload BLOB NOT NULL,
        created_at BIGINT NOT NULL, seq BIGINT UNIQUE);
    CREATE TABLE outbox_head (id INTEGER PRIMARY KEY CHECK (id = 1), last_seq BIGINT NOT NULL);
    INSERT INTO outbox_head (id, last_seq) VALUES (1, 0);";

#[derive(Debug)]
enum TestError {
    Rule,
    Idempotency(IdempotencyError),
}

impl From<IdempotencyError> for TestError {
    fn from(e: IdempotencyError) -> Self {
        Self::Idempotency(e)
    }
}

impl From<sqlx::Error> for TestError {
    fn from(e: sqlx::Error) -> Self {
        Self::Idempotency(IdempotencyError::Database(e))
    }
}

async fn open(name: &str) -> (Db, Mutations) {
    let dir = std::env::temp_dir().join(format!("writer-{}", std::process::id()));
    let url = format!("sqlite://{}/{name}.db", dir.display());
    let _ = std::fs::remove_file(url.trim_start_matches("sqlite://"));
    let db = Db::connect(&DbOptions::new(url)).await.expect("open");
    db.migrate(&Migrations::new(&[(1, "test", SCHEMA)]))
        .await
        .expect("schema");
    let clock: SharedClock = Arc::new(crate::clock::SystemClock);
    let mutations = Mutations::new(db.clone(), clock, Relay::new());
    (db, mutations)
}

/// Inserts item `id` = `n` with an event; fails its rule (after writing)
/// when `n` is odd; first waits `hold` (to let a batch queue up behind it).
fn insert(
    mutations: &Mutations,
    id: String,
    n: i64,
    hold: Duration,
    request_id: Option<String>,
) -> impl Future<Output = Result<i64, TestError>> + use<> {
    let mutations = mutations.clone();
    async move {
        mutations
            .run(
                Call::new("tester".into(), "Insert", request_id, &id.clone()),
                move |unit| {
                    Box::pin(async move {
                        tokio::time::sleep(hold).await;
                        sqlx::query("INSERT INTO items (id, n) VALUES ($1, $2)")
                            .bind(&id)
                            .bind(n)
                            .execute(&mut **unit.tx())
                            .await?;
                        unit.emit(outbox::NewEvent {
                            event_id: format!("evt-{id}"),
                            subject_id: id.clone(),
                            kind: "Inserted",
                            payload: Vec::new(),
                            created_at: Utc::now(),
                        });
                        if n % 2 == 1 {
                            return Err(TestError::Rule);
                        }
                        Ok(n)
                    })
                },
            )
            .await
    }
}

/// A mutation that holds the writer for 200 ms (item `id` = 0), so what
/// is submitted meanwhile queues up into one batch.
fn hold_the_writer(
    mutations: &Mutations,
    id: &str,
) -> tokio::task::JoinHandle<Result<i64, TestError>> {
    tokio::spawn(insert(
        mutations,
        id.into(),
        0,
        Duration::from_millis(200),
        None,
    ))
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(db.reader())
        .await
        .expect("count")
}

#[tokio::test]
async fn a_failed_mutation_rolls_back_alone_and_the_rest_of_its_batch_commits_before_answering() {
    let (db, mutations) = open("batch").await;
    // The first mutation holds the writer while 20 more queue behind it,
    // so they run as one batch.
    let first = hold_the_writer(&mutations, "first");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rest: Vec<_> = (1..=20)
        .map(|n| {
            tokio::spawn(insert(
                &mutations,
                format!("item-{n}"),
                n,
                Duration::ZERO,
                None,
            ))
        })
        .collect();
    assert_eq!(first.await.expect("join").expect("first"), 0);
    for (n, task) in (1..=20).zip(rest) {
        let result = task.await.expect("join");
        if n % 2 == 1 {
            assert!(matches!(result, Err(TestError::Rule)), "{n}: {result:?}");
        } else {
            assert_eq!(result.expect("even items commit"), n);
            // Answered only once committed: another connection sees it.
            let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items WHERE id = $1")
                .bind(format!("item-{n}"))
                .fetch_one(db.reader())
                .await
                .expect("read");
            assert_eq!(seen, 1, "item-{n} visible once acknowledged");
        }
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM items").await, 11);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM items WHERE n % 2 = 1").await,
        0,
        "the failed mutations' writes were rolled back"
    );
    let events: Vec<String> = sqlx::query_scalar("SELECT subject_id FROM outbox ORDER BY id")
        .fetch_all(db.reader())
        .await
        .expect("events");
    let mut expected = vec!["first".to_owned()];
    expected.extend((2..=20).step_by(2).map(|n| format!("item-{n}")));
    assert_eq!(events, expected, "one event per kept mutation, in order");
    let sequences: Vec<i64> = sqlx::query_scalar("SELECT seq FROM outbox ORDER BY id")
        .fetch_all(db.reader())
        .await
        .expect("sequences");
    assert_eq!(
        sequences,
        (1..=11).collect::<Vec<i64>>(),
        "sequenced at commit"
    );
    db.close().await;
}

#[tokio::test]
async fn a_retry_in_the_same_batch_or_a_later_one_replays_and_other_parameters_are_refused() {
    let (db, mutations) = open("replay").await;
    let hold = hold_the_writer(&mutations, "hold");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let key = || Some("req-1".to_owned());
    let a = tokio::spawn(insert(&mutations, "a".into(), 2, Duration::ZERO, key()));
    let b = tokio::spawn(insert(&mutations, "a".into(), 2, Duration::ZERO, key()));
    let other = tokio::spawn(insert(&mutations, "z".into(), 4, Duration::ZERO, key()));
    hold.await.expect("join").expect("hold");
    assert_eq!(a.await.expect("join").expect("first"), 2);
    assert_eq!(b.await.expect("join").expect("replayed"), 2);
    assert!(matches!(
        other.await.expect("join"),
        Err(TestError::Idempotency(IdempotencyError::Mismatch))
    ));
    // A later batch finds the stored key.
    let again = insert(&mutations, "a".into(), 2, Duration::ZERO, key()).await;
    assert_eq!(again.expect("replayed from the table"), 2);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM items").await, 2);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM idempotency_keys").await, 1);
    db.close().await;
}

#[tokio::test]
async fn a_panicking_mutation_fails_alone() {
    let (db, mutations) = open("panic").await;
    let hold = hold_the_writer(&mutations, "hold");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let m = mutations.clone();
    let panics = tokio::spawn(async move {
        m.run(Call::new("tester".into(), "Panic", None, &()), |unit| {
            Box::pin(async move {
                sqlx::query("INSERT INTO items (id, n) VALUES ('panic', 0)")
                    .execute(&mut **unit.tx())
                    .await?;
                if unit.events.is_empty() {
                    panic!("a bug in a mutation");
                }
                Ok::<(), TestError>(())
            })
        })
        .await
    });
    let after = tokio::spawn(insert(&mutations, "after".into(), 2, Duration::ZERO, None));
    hold.await.expect("join").expect("hold");
    assert!(panics.await.expect("join").is_err());
    assert_eq!(after.await.expect("join").expect("after"), 2);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM items WHERE id = 'panic'").await,
        0
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM items").await, 2);
    db.close().await;
}
