//! Group commit: every mutating RPC hands its work to a writer, which runs a
//! batch of waiting mutations in one transaction, each in its own savepoint
//! (a mutation whose rule fails rolls back alone), commits once, and only
//! then answers each of them. An OK answer therefore always means committed.
//!
//! Inside a batch the writer also checks every idempotency key at once,
//! writes the batch's outbox events and new keys in one statement each, and
//! answers a duplicate of an earlier mutation of the same batch with that
//! mutation's response. On SQLite one writer owns all writes (the database
//! has a single writer anyway); on PostgreSQL several writers share the
//! queue, and each claims a request's key before running it, since other
//! connections (and replicas) write concurrently.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use prost::Message;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::auth::Caller;
use crate::clock::SharedClock;
use crate::db::{Backend, Db, Tx};
use crate::idempotency::{self, IdempotencyError, IdempotencyKey, KeyId, Stored};
use crate::outbox::{self, Relay};
use crate::proto::{contract::v1 as contract, feedback::v1 as feedback};
use crate::validate::{self, Violations};

pub mod single;

/// What names a mutation for idempotency: who calls, which RPC, the
/// client's `request_id` and a fingerprint of the rest of the request. A
/// call without a `request_id` is never replayed.
#[derive(Debug)]
pub struct Call {
    key: Option<IdempotencyKey>,
}

impl Call {
    /// `caller`'s `method` call; `fingerprint_of` is the request with its
    /// `request_id` cleared.
    pub fn new(
        caller: String,
        method: &'static str,
        request_id: Option<String>,
        fingerprint_of: &impl Message,
    ) -> Self {
        Self {
            key: request_id.map(|id| IdempotencyKey::new(caller, method, id, fingerprint_of)),
        }
    }

    /// `caller`'s `method` call with `request`: its `request_id` is checked
    /// into `v` (a malformed one is a violation; an empty one means none).
    pub fn of(
        v: &mut Violations,
        caller: &Caller,
        method: &'static str,
        request: &impl Idempotent,
    ) -> Self {
        let request_id = v.check("request_id", validate::request_id(request.request_id()));
        Self::new(
            caller.key(),
            method,
            request_id,
            &request.without_request_id(),
        )
    }
}

/// A mutating request with a client-chosen `request_id`: idempotency
/// compares a retry with the first call by the rest of the request.
pub trait Idempotent: Message + Sized {
    /// The client's id for the request ("" when none was given).
    fn request_id(&self) -> &str;
    /// The request with its `request_id` cleared.
    fn without_request_id(&self) -> Self;
}

/// Implements [`Idempotent`] for request messages with a `request_id` field.
macro_rules! idempotent {
    ($($request:path),* $(,)?) => {
        $(impl Idempotent for $request {
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn without_request_id(&self) -> Self {
                Self { request_id: String::new(), ..self.clone() }
            }
        })*
    };
}

idempotent!(
    contract::CreateContractRequest,
    contract::EndContractRequest,
    contract::LogTimeRequest,
    contract::DeleteTimeEntryRequest,
    contract::RecordPaymentRequest,
    contract::RefundPaymentRequest,
    contract::DisputeHoursRequest,
    contract::AcceptDisputeRequest,
    contract::DeclineDisputeRequest,
    contract::ResolveDisputeRequest,
    contract::WithdrawDisputeRequest,
    feedback::SubmitMidContractFeedbackRequest,
    feedback::RequestMidContractFeedbackRequest,
    feedback::SubmitEndContractFeedbackRequest,
    feedback::ReplyToFeedbackRequest,
    feedback::HideFeedbackRequest,
    feedback::RestoreFeedbackRequest,
);

/// How mutations are grouped into transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Writers running batches at once, each on its own connection. SQLite
    /// always has one.
    pub writers: usize,
    /// Most mutations in one transaction.
    pub max_batch: usize,
}

impl WriteOptions {
    /// The defaults per backend (see docs/benchmarks.md for the measurements
    /// behind them).
    pub fn default_for(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self {
                writers: 1,
                max_batch: 64,
            },
            Backend::Postgres => Self {
                writers: 12,
                max_batch: 1,
            },
        }
    }
}

/// The transaction a mutation runs in, shared with the other mutations of
/// its batch, and the outbox events it emits.
pub struct Unit {
    tx: Tx,
    events: Vec<outbox::NewEvent>,
}

impl Unit {
    /// The transaction, for the store's statements.
    pub fn tx(&mut self) -> &mut Tx {
        &mut self.tx
    }

    /// Adds an event to the outbox: it commits with the mutation, or not at
    /// all if the mutation fails.
    pub fn emit(&mut self, event: outbox::NewEvent) {
        self.events.push(event);
    }

    /// Adds the event of a change to `contract_id` at `now` (see [`Unit::emit`]).
    pub fn event(
        &mut self,
        contract_id: &str,
        now: DateTime<Utc>,
        kind: &'static str,
        payload: impl outbox::EventPayload,
    ) {
        self.emit(outbox::NewEvent::of(contract_id, now, kind, payload));
    }
}

/// A mutation's work: it runs inside the batch's transaction.
type Work<R, E> = Box<dyn for<'u> FnOnce(&'u mut Unit) -> BoxFuture<'u, Result<R, E>> + Send>;

/// What answers a caller once the batch's commit succeeded (`Ok`) or failed.
type Deliver = Box<dyn FnOnce(Result<(), &sqlx::Error>) + Send>;

/// A finished mutation: whether its changes stay, the response to store
/// under its key, and its answer.
struct Ran {
    kept: bool,
    response: Option<Vec<u8>>,
    deliver: Deliver,
}

/// A queued mutation, with its result type erased.
trait Job: Send {
    fn key(&self) -> Option<&IdempotencyKey>;
    fn run<'u>(self: Box<Self>, unit: &'u mut Unit) -> BoxFuture<'u, Ran>;
    /// Answers from a stored response (or refuses a mismatch) after commit.
    fn replay(self: Box<Self>, stored: &Stored) -> Deliver;
    /// Answers at once: the batch could not run.
    fn fail(self: Box<Self>, err: &sqlx::Error);
}

struct Typed<R, E> {
    key: Option<IdempotencyKey>,
    work: Work<R, E>,
    reply: oneshot::Sender<Result<R, E>>,
}

impl<R, E> Job for Typed<R, E>
where
    R: Message + Default + Send + 'static,
    E: From<IdempotencyError> + Send + 'static,
{
    fn key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }

    fn run<'u>(self: Box<Self>, unit: &'u mut Unit) -> BoxFuture<'u, Ran> {
        let Typed { key, work, reply } = *self;
        Box::pin(async move {
            match work(unit).await {
                Ok(response) => Ran {
                    kept: true,
                    response: key.is_some().then(|| response.encode_to_vec()),
                    deliver: Box::new(move |committed| {
                        let _ = reply.send(match committed {
                            Ok(()) => Ok(response),
                            Err(e) => Err(batch_failed(e)),
                        });
                    }),
                },
                Err(err) => Ran {
                    kept: false,
                    response: None,
                    deliver: Box::new(move |committed| {
                        // A rule may have failed on what an earlier mutation
                        // of the batch wrote; if that did not commit, the
                        // honest answer is "try again".
                        let _ = reply.send(match committed {
                            Ok(()) => Err(err),
                            Err(e) => Err(batch_failed(e)),
                        });
                    }),
                },
            }
        })
    }

    fn replay(self: Box<Self>, stored: &Stored) -> Deliver {
        let result = match &self.key {
            Some(key) => stored.replay(key),
            None => R::decode(stored.response.as_slice())
                .map_err(|e| E::from(IdempotencyError::Database(sqlx::Error::Decode(Box::new(e))))),
        };
        let reply = self.reply;
        Box::new(move |committed| {
            let _ = reply.send(match committed {
                Ok(()) => result,
                Err(e) => Err(batch_failed(e)),
            });
        })
    }

    fn fail(self: Box<Self>, err: &sqlx::Error) {
        let _ = self.reply.send(Err(batch_failed(err)));
    }
}

/// The error each mutation of a failed batch gets: UNAVAILABLE when the
/// database could not be reached or the commit conflicted (a retry with the
/// same `request_id` is safe), INTERNAL otherwise.
fn batch_failed<E: From<IdempotencyError>>(err: &sqlx::Error) -> E {
    let copy = if crate::db::is_unavailable(err) {
        sqlx::Error::Io(std::io::Error::other(format!(
            "the write's transaction failed: {err}"
        )))
    } else {
        sqlx::Error::Protocol(format!("the write's transaction failed: {err}"))
    };
    E::from(IdempotencyError::Database(copy))
}

/// Runs the mutating RPCs of a service through its writers: the request's
/// idempotency key is checked first, and the outbox relay is woken once the
/// change (and its event) committed.
#[derive(Debug, Clone)]
pub struct Mutations {
    queue: mpsc::Sender<Box<dyn Job>>,
}

impl std::fmt::Debug for dyn Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Mutations {
    /// Starts the writers (they stop once every clone of this is dropped and
    /// the queue has been drained).
    pub fn new(db: Db, clock: SharedClock, relay: Relay) -> Self {
        let options = db.write_options();
        let (queue, rx) = mpsc::channel::<Box<dyn Job>>(4096);
        let rx = Arc::new(Mutex::new(rx));
        let writers = if db.backend() == Backend::Sqlite {
            1
        } else {
            options.writers.max(1)
        };
        for _ in 0..writers {
            let run = write_loop(
                db.clone(),
                clock.clone(),
                relay.clone(),
                rx.clone(),
                options.max_batch.max(1),
            );
            if db.backend() == Backend::Sqlite {
                // SQLite's statements run on the thread that calls them: a
                // thread of its own keeps a batch (and a commit's WAL
                // checkpoint) off the threads that serve requests.
                let started = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        std::thread::Builder::new()
                            .name("sqlite-writer".into())
                            .spawn(move || runtime.block_on(run))
                    });
                if let Err(err) = started {
                    // Without a writer every mutation answers UNAVAILABLE.
                    tracing::error!(error = %err, "cannot start the SQLite writer thread");
                }
            } else {
                tokio::spawn(run);
            }
        }
        Self { queue }
    }

    /// Runs `work` in a write transaction and answers once it committed,
    /// or replays the first response of a retry of the same `call`.
    pub async fn run<R, E, F>(&self, call: Call, work: F) -> Result<R, E>
    where
        R: Message + Default + Send + 'static,
        E: From<IdempotencyError> + Send + 'static,
        F: for<'u> FnOnce(&'u mut Unit) -> BoxFuture<'u, Result<R, E>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Typed {
            key: call.key,
            work: Box::new(work),
            reply,
        });
        let abandoned = || E::from(IdempotencyError::Database(sqlx::Error::WorkerCrashed));
        if self.queue.send(job).await.is_err() {
            return Err(abandoned());
        }
        answer.await.unwrap_or_else(|_| Err(abandoned()))
    }

    /// [`Mutations::run`] for a background job's step: no caller and no
    /// idempotency key (the step's own conditional writes make a rerun safe).
    pub async fn background<R, E, F>(&self, work: F) -> Result<R, E>
    where
        R: Message + Default + Send + 'static,
        E: From<IdempotencyError> + Send + 'static,
        F: for<'u> FnOnce(&'u mut Unit) -> BoxFuture<'u, Result<R, E>> + Send + 'static,
    {
        self.run(Call { key: None }, work).await
    }
}

async fn write_loop(
    db: Db,
    clock: SharedClock,
    relay: Relay,
    queue: Arc<Mutex<mpsc::Receiver<Box<dyn Job>>>>,
    max_batch: usize,
) {
    let exclusive = db.backend() == Backend::Sqlite;
    loop {
        let mut jobs = Vec::with_capacity(max_batch);
        {
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < max_batch {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        let size = jobs.len();
        match run_batch(&db, exclusive, clock.now(), jobs).await {
            Committed::Sequenced(head) => relay.advance(head),
            Committed::Unsequenced => relay.poke(),
            Committed::NoEvents => {}
        }
        tracing::trace!(size, "write batch done");
    }
}

/// What a batch committed, for the outbox relay.
enum Committed {
    NoEvents,
    /// Events, already sequenced up to this head (single writer).
    Sequenced(i64),
    /// Events the relay must sequence.
    Unsequenced,
}

/// Runs one batch.
async fn run_batch(
    db: &Db,
    exclusive: bool,
    now: DateTime<Utc>,
    jobs: Vec<Box<dyn Job>>,
) -> Committed {
    let tx = match db.begin().await {
        Ok(tx) => tx,
        Err(err) => {
            tracing::warn!(error = %err, "cannot start a write transaction");
            for job in jobs {
                job.fail(&err);
            }
            return Committed::NoEvents;
        }
    };
    let mut unit = Unit {
        tx,
        events: Vec::new(),
    };
    let alone = jobs.len() == 1;
    let mut known: HashMap<KeyId, Stored> = HashMap::new();
    if exclusive {
        let keys: Vec<&IdempotencyKey> = jobs.iter().filter_map(|j| j.key()).collect();
        if !keys.is_empty() {
            match idempotency::lookup_many(&mut unit.tx, &keys).await {
                Ok(found) => known = found,
                Err(err) => return abort(&err, Vec::new(), jobs),
            }
        }
    }
    let mut delivers: Vec<Deliver> = Vec::with_capacity(jobs.len());
    let mut new_keys: Vec<(IdempotencyKey, Vec<u8>)> = Vec::new();
    let mut kept_any = false;
    let mut jobs = jobs.into_iter();
    while let Some(job) = jobs.next() {
        let key = job.key().cloned();
        if let Some(key) = &key
            && let Some(stored) = known.get(&key.id())
        {
            delivers.push(job.replay(stored));
            continue;
        }
        if !alone && let Err(err) = savepoint(&mut unit.tx, "SAVEPOINT job").await {
            return abort(&err, delivers, jobs.collect());
        }
        if !exclusive && let Some(key) = &key {
            match idempotency::claim(&mut unit.tx, key, now).await {
                Ok(None) => {}
                Ok(Some(stored)) => {
                    delivers.push(job.replay(&stored));
                    continue;
                }
                Err(err) => {
                    // The claim's own failure ends the transaction's usefulness.
                    job.fail(&err);
                    return abort(&err, delivers, jobs.collect());
                }
            }
        }
        let mark = unit.events.len();
        let ran = AssertUnwindSafe(job.run(&mut unit)).catch_unwind().await;
        let ran = match ran {
            Ok(ran) => ran,
            Err(_) => {
                // The job's answer channel was dropped with it: its caller
                // gets UNAVAILABLE. Undo whatever it wrote.
                tracing::error!("a mutation panicked; its changes are rolled back");
                Ran {
                    kept: false,
                    response: None,
                    deliver: Box::new(|_| {}),
                }
            }
        };
        if ran.kept {
            kept_any = true;
            if let (Some(key), Some(response)) = (key, ran.response) {
                if exclusive {
                    new_keys.push((key.clone(), response.clone()));
                } else if let Err(err) =
                    idempotency::store_response(&mut unit.tx, &key, response.clone()).await
                {
                    delivers.push(ran.deliver);
                    return abort(&err, delivers, jobs.collect());
                }
                known.insert(
                    key.id(),
                    Stored {
                        fingerprint: key.fingerprint().to_owned(),
                        response,
                    },
                );
            }
        } else {
            unit.events.truncate(mark);
            if !alone && let Err(err) = savepoint(&mut unit.tx, "ROLLBACK TO SAVEPOINT job").await {
                delivers.push(ran.deliver);
                return abort(&err, delivers, jobs.collect());
            }
        }
        delivers.push(ran.deliver);
    }
    let Unit { mut tx, events } = unit;
    let committed = async {
        if !kept_any {
            // Nothing to keep (every job failed or replayed).
            tx.rollback().await?;
            return Ok(Committed::NoEvents);
        }
        let outcome = if events.is_empty() {
            Committed::NoEvents
        } else if exclusive {
            Committed::Sequenced(outbox::append_sequenced(&mut tx, &events).await?)
        } else {
            outbox::append_many(&mut tx, &events).await?;
            Committed::Unsequenced
        };
        if !new_keys.is_empty() {
            idempotency::insert_many(&mut tx, &new_keys, now).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }
    .await;
    if let Err(err) = &committed {
        tracing::warn!(error = %err, "a write batch failed to commit");
    }
    for deliver in delivers {
        deliver(committed.as_ref().map(|_| ()));
    }
    committed.unwrap_or(Committed::NoEvents)
}

/// A savepoint statement, sent unprepared (it has no parameters).
async fn savepoint(tx: &mut Tx, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sql).execute(&mut **tx).await.map(|_| ())
}

/// Fails a batch whose transaction broke: mutations already run and those
/// not yet run all get the error; nothing of the batch commits.
fn abort(err: &sqlx::Error, delivers: Vec<Deliver>, rest: Vec<Box<dyn Job>>) -> Committed {
    tracing::warn!(error = %err, "a write batch was rolled back");
    for deliver in delivers {
        deliver(Err(err));
    }
    for job in rest {
        job.fail(err);
    }
    Committed::NoEvents
}

#[cfg(test)]
mod tests;
