//! The writer thread: the only connection that writes. It takes every append waiting (up to
//! [`MAX_GROUP_ROWS`](super::MAX_GROUP_ROWS) events) and the other write jobs from its queue and
//! commits each group in one `BEGIN IMMEDIATE` transaction, each publisher's batch in a
//! savepoint; one `COMMIT` (one fsync with `synchronous=FULL`) makes the group durable, then the
//! events go into the commit log and the publishers are answered.

use super::*;

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) log: Arc<CommitLog>,
    pub(super) head: u64,
}

struct AppendJob {
    events: Vec<Event>,
    expected: Option<ExpectedSeq>,
    reply: Reply<Vec<Appended>>,
}

enum Inserted {
    New,
    Duplicate(Event),
}

impl Writer {
    pub(super) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut group: Vec<AppendJob> = Vec::new();
        while let Some(job) = jobs.blocking_recv() {
            let mut next = Some(job);
            let mut rows = 0;
            // Take what is waiting, up to a group's worth of rows; an Exec ends the group.
            while let Some(job) = next.take() {
                match job {
                    Job::Append {
                        events,
                        expected,
                        reply,
                    } => {
                        rows += events.len();
                        group.push(AppendJob {
                            events,
                            expected,
                            reply,
                        });
                        if rows < MAX_GROUP_ROWS {
                            next = jobs.try_recv().ok();
                        }
                    }
                    Job::Exec(f) => {
                        self.commit_group(std::mem::take(&mut group));
                        f(&mut self.conn);
                    }
                }
            }
            self.commit_group(std::mem::take(&mut group));
        }
        self.commit_group(group);
    }

    fn commit_group(&mut self, group: Vec<AppendJob>) {
        if group.is_empty() {
            return;
        }
        let prev = self.head;
        let started = std::time::Instant::now();
        match self.write_group(group) {
            Ok((committed, replies)) => {
                let rows = committed
                    .iter()
                    .map(|r| r.as_ref().map_or(0, Vec::len))
                    .sum();
                crate::metric::store_group(rows, started.elapsed());
                let new: Vec<Arc<Event>> = committed
                    .iter()
                    .flat_map(|r| r.iter().flatten())
                    .filter(|a| a.created)
                    .map(|a| a.event.clone())
                    .collect();
                if let Some(last) = new.last() {
                    self.head = last.seq;
                    self.log.push(prev, &new);
                }
                for (result, reply) in committed.into_iter().zip(replies) {
                    let _ = reply.send(result);
                }
            }
            Err((e, replies)) => {
                tracing::error!(error = %e, "event store commit failed; the group was rolled back");
                let _ = self.conn.execute_batch("ROLLBACK");
                let full = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
                for reply in replies {
                    let _ = reply.send(Err(if full {
                        StoreError::Full(e.to_string())
                    } else {
                        unavailable(&e)
                    }));
                }
            }
        }
    }

    /// Writes and commits a group; on a storage error everything is rolled back by the caller.
    #[allow(clippy::type_complexity)]
    fn write_group(
        &mut self,
        group: Vec<AppendJob>,
    ) -> Result<
        (
            Vec<Result<Vec<Appended>, StoreError>>,
            Vec<Reply<Vec<Appended>>>,
        ),
        (rusqlite::Error, Vec<Reply<Vec<Appended>>>),
    > {
        let mut replies = Vec::with_capacity(group.len());
        let mut results = Vec::with_capacity(group.len());
        let mut pending = Vec::with_capacity(group.len());
        for job in group {
            replies.push(job.reply);
            pending.push((job.events, job.expected));
        }
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            return Err((e, replies));
        }
        for (events, expected) in pending {
            match self.write_batch(events, expected.as_ref()) {
                Ok(r) => results.push(r),
                Err(e) => return Err((e, replies)),
            }
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            return Err((e, replies));
        }
        Ok((results, replies))
    }

    /// One publisher's batch, atomically: a conflict or a wrong expected seq undoes the whole
    /// batch and only it. The expectation is read in the group's transaction, so it sees the
    /// batches before it in the group; a batch that stores nothing new (a retry) skips it.
    fn write_batch(
        &mut self,
        events: Vec<Event>,
        expected: Option<&ExpectedSeq>,
    ) -> rusqlite::Result<Result<Vec<Appended>, StoreError>> {
        let actual = match expected {
            Some(e) => Some(last_seq_of_project(&self.conn, &e.project_id)?),
            None => None,
        };
        let savepoint = events.len() > 1 || expected.is_some();
        if savepoint {
            self.conn.execute_batch("SAVEPOINT batch")?;
        }
        let mut out = Vec::with_capacity(events.len());
        for (index, mut event) in events.into_iter().enumerate() {
            match insert(&self.conn, &mut event)? {
                Some(Inserted::New) => out.push(Appended {
                    event: Arc::new(event),
                    created: true,
                }),
                Some(Inserted::Duplicate(stored)) => out.push(Appended {
                    event: Arc::new(stored),
                    created: false,
                }),
                None => {
                    if savepoint {
                        self.conn
                            .execute_batch("ROLLBACK TO batch; RELEASE batch")?;
                    }
                    return Ok(Err(StoreError::Conflict {
                        index,
                        id: event.id,
                    }));
                }
            }
        }
        if let (Some(e), Some(actual)) = (expected, actual)
            && actual != e.last_seq
            && out.iter().any(|a| a.created)
        {
            self.conn
                .execute_batch("ROLLBACK TO batch; RELEASE batch")?;
            return Ok(Err(StoreError::WrongExpectedSeq {
                project_id: e.project_id.clone(),
                expected: e.last_seq,
                actual,
            }));
        }
        if savepoint {
            self.conn.execute_batch("RELEASE batch")?;
        }
        Ok(Ok(out))
    }
}

/// Inserts `event`, setting its `seq`; `None` when its id is stored with other content.
fn insert(conn: &Connection, event: &mut Event) -> rusqlite::Result<Option<Inserted>> {
    let metadata = (!event.metadata.is_empty())
        .then(|| serde_json::to_string(&event.metadata).expect("string map serialises"));
    let changed = conn.prepare_cached(INSERT_EVENT_SQL)?.execute(params![
        event.id,
        event.event_type,
        event.timestamp.as_micros(),
        event.project_id,
        event.tenant_id,
        event.user_id,
        event.payload.get(),
        metadata,
    ])?;
    if changed == 1 {
        event.seq = conn.last_insert_rowid() as u64;
        return Ok(Some(Inserted::New));
    }
    let stored = select_by_id(conn, &event.id)?.expect("a conflicting id is stored");
    Ok(stored
        .same_content(event)
        .then_some(Inserted::Duplicate(stored)))
}
