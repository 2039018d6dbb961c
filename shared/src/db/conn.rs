//! A write transaction ([`Tx`]) and the read side ([`Reader`]): each a sqlx
//! `Executor`, over a pooled connection or SQLite's inline connections.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Any, AnyPool, Either, Execute, Executor, SqlStr, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::sqlite_inline::InlineConnection;

/// A write transaction. Use `&mut **tx` (or `&mut *tx` on an owned one) as
/// the executor of a sqlx query.
#[derive(Debug)]
pub struct Tx {
    pub(super) conn: TxConn,
}

/// The connection of a [`Tx`]: `&mut TxConn` is a sqlx `Executor` for the
/// `Any` driver.
#[derive(Debug)]
pub struct TxConn(pub(super) Inner);

#[derive(Debug)]
pub(super) enum Inner {
    Pooled(Transaction<'static, Any>),
    Inline(InlineTx),
}

/// The write connection, held for one transaction.
#[derive(Debug)]
pub(super) struct InlineTx(pub(super) OwnedMutexGuard<InlineConnection>);

impl Drop for InlineTx {
    fn drop(&mut self) {
        // Neither committed nor rolled back (an error or a panic on the way):
        // roll back, as a dropped sqlx transaction does.
        if self.0.in_transaction()
            && let Err(err) = self.0.batch("ROLLBACK")
        {
            tracing::error!(error = %err, "cannot roll back an abandoned write transaction");
        }
    }
}

impl std::ops::Deref for Tx {
    type Target = TxConn;
    fn deref(&self) -> &TxConn {
        &self.conn
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut TxConn {
        &mut self.conn
    }
}

impl Tx {
    /// Commits. On SQLite a failed COMMIT leaves nothing behind: the
    /// transaction is rolled back.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.conn.0 {
            Inner::Pooled(tx) => tx.commit().await,
            // Dropping the guard after a failed COMMIT rolls back.
            Inner::Inline(inline) => inline.0.batch("COMMIT"),
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.conn.0 {
            Inner::Pooled(tx) => tx.rollback().await,
            Inner::Inline(inline) => inline.0.batch("ROLLBACK"),
        }
    }
}

/// Implements sqlx's `Executor` for a connection type from the bodies of the
/// three methods it has to provide (the others default to them): the
/// signatures, the same for every executor, are written once here.
macro_rules! executor {
    ($conn:ty {
        fn fetch_many($many_self:ident, $many_query:ident) $fetch_many:block
        fn fetch_optional($optional_self:ident, $optional_query:ident) $fetch_optional:block
        fn prepare_with($prepare_self:ident, $sql:ident, $parameters:ident) $prepare_with:block
    }) => {
        impl<'c> Executor<'c> for $conn {
            type Database = Any;

            fn fetch_many<'e, 'q: 'e, E>(
                $many_self,
                $many_query: E,
            ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
            where
                'c: 'e,
                E: 'q + Execute<'q, Any>,
            $fetch_many

            fn fetch_optional<'e, 'q: 'e, E>(
                $optional_self,
                $optional_query: E,
            ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
            where
                'c: 'e,
                E: 'q + Execute<'q, Any>,
            $fetch_optional

            fn prepare_with<'e>(
                $prepare_self,
                $sql: SqlStr,
                $parameters: &'e [AnyTypeInfo],
            ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
            where
                'c: 'e,
            $prepare_with
        }
    };
}

fn steps_stream<'e>(
    steps: Result<Vec<crate::sqlite_inline::Step>, sqlx::Error>,
) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> {
    let items: Vec<_> = match steps {
        Ok(steps) => steps.into_iter().map(Ok).collect(),
        Err(err) => vec![Err(err)],
    };
    Box::pin(futures::stream::iter(items))
}

/// The SQL and arguments of a query, for the write connection.
fn take<'q, E: Execute<'q, Any>>(
    mut query: E,
) -> Result<(SqlStr, Option<sqlx::any::AnyArguments>), sqlx::Error> {
    let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
    Ok((query.sql(), arguments))
}

executor! {
    &'c mut TxConn {
        fn fetch_many(self, query) {
            match &mut self.0 {
                Inner::Pooled(tx) => (&mut **tx).fetch_many(query),
                Inner::Inline(inline) => steps_stream(
                    take(query).and_then(|(sql, arguments)| inline.0.run(sql.as_str(), arguments)),
                ),
            }
        }

        fn fetch_optional(self, query) {
            match &mut self.0 {
                Inner::Pooled(tx) => (&mut **tx).fetch_optional(query),
                Inner::Inline(inline) => {
                    let row = take(query)
                        .and_then(|(sql, arguments)| inline.0.run(sql.as_str(), arguments))
                        .map(|steps| steps.into_iter().find_map(|step| step.right()));
                    Box::pin(std::future::ready(row))
                }
            }
        }

        fn prepare_with(self, sql, parameters) {
            match &mut self.0 {
                Inner::Pooled(tx) => (&mut **tx).prepare_with(sql, parameters),
                Inner::Inline(_) => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                    "the SQLite write connection prepares statements when they run".into(),
                )))),
            }
        }
    }
}

/// Where reads outside a transaction run: PostgreSQL's pool, or SQLite's
/// read connections, whose statements run on the calling thread (a read
/// holds its connection only while its statement runs, so there is one
/// waiting only when every connection is busy on another thread).
#[derive(Debug, Clone)]
pub struct Reader {
    pub(super) pool: AnyPool,
    /// Empty: reads go to the pool (PostgreSQL, in-memory SQLite).
    pub(super) inline: Arc<Vec<Mutex<InlineConnection>>>,
    /// Where a read waits when every connection is busy, taken in turn.
    pub(super) next: Arc<std::sync::atomic::AtomicUsize>,
}

impl Reader {
    pub(super) fn pooled(pool: AnyPool) -> Self {
        Self {
            pool,
            inline: Arc::new(Vec::new()),
            next: Arc::default(),
        }
    }

    async fn connection(&self) -> tokio::sync::MutexGuard<'_, InlineConnection> {
        for conn in self.inline.iter() {
            if let Ok(conn) = conn.try_lock() {
                return conn;
            }
        }
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inline[turn % self.inline.len()].lock().await
    }

    /// Open and idle connections.
    pub(super) fn occupancy(&self) -> (u32, usize) {
        if self.inline.is_empty() {
            return (self.pool.size(), self.pool.num_idle());
        }
        let idle = self.inline.iter().filter(|c| c.try_lock().is_ok()).count();
        (u32::try_from(self.inline.len()).unwrap_or(u32::MAX), idle)
    }
}

executor! {
    &'c Reader {
        fn fetch_many(self, query) {
            use futures::StreamExt;
            if self.inline.is_empty() {
                return self.pool.fetch_many(query);
            }
            Box::pin(
                futures::stream::once(async move {
                    let (sql, arguments) = take(query)?;
                    self.connection().await.run(sql.as_str(), arguments)
                })
                .flat_map(steps_stream),
            )
        }

        fn fetch_optional(self, query) {
            if self.inline.is_empty() {
                return self.pool.fetch_optional(query);
            }
            Box::pin(async move {
                let (sql, arguments) = take(query)?;
                let steps = self.connection().await.run(sql.as_str(), arguments)?;
                Ok(steps.into_iter().find_map(|step| step.right()))
            })
        }

        fn prepare_with(self, sql, parameters) {
            self.pool.prepare_with(sql, parameters)
        }
    }
}
