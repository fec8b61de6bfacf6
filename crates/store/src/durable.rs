//! [`Durable`]: a [`Table`] behind a write-ahead log and Parquet segments.

use crate::place::{day_before, scope_hash, Place};
use crate::segment::{
    read_segment, read_segment_columns, verify_segment, SegmentName, SegmentWriter,
};
use crate::snapshot::{self, SnapshotReader, SnapshotWriter};
use crate::wal::{frame, read_frames, sync_dir, truncate, FrameLog};
use crate::{StoreError, Table};
use arrow::array::RecordBatch;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

#[derive(Debug, Clone)]
pub struct Options {
    /// The log rotates (and its closed generation is compacted into
    /// segments) once it grows past this many bytes.
    pub rotate_bytes: u64,
    /// Most writes one group commit takes at once.
    pub max_group: usize,
    /// After this long without writes, a table written to since its last
    /// snapshot is snapshotted (so a restart after a burst loads one file).
    pub idle_snapshot: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rotate_bytes: 64 << 20,
            max_group: 4096,
            idle_snapshot: std::time::Duration::from_secs(3),
        }
    }
}

type Ack = SyncSender<Result<(), StoreError>>;

enum Job<W> {
    Append {
        payload: Vec<u8>,
        batch: Vec<W>,
        ack: Ack,
    },
    /// Rotate the log now and acknowledge once its generation is in segments
    /// (with `snapshot`, snapshotting the table at that boundary too).
    Checkpoint { ack: Ack, snapshot: bool },
    /// Log the deletion of a scope, apply it, and acknowledge once its
    /// older segments are gone.
    Delete {
        tenant: String,
        project: String,
        ack: Ack,
    },
}

/// What the compactor does, in the order it is asked.
enum CompactJob {
    /// Turn a closed log generation into segments, then delete the log.
    Generation { generation: u64, ack: Option<Ack> },
    /// Write a snapshot of the table as of `generation` and delete older
    /// ones; then clear `done`.
    Snapshot {
        generation: u64,
        bytes: Vec<u8>,
        done: Arc<std::sync::atomic::AtomicBool>,
    },
    /// Delete a scope's segments of generations below `below`: all of them,
    /// or (with `cutoff_us`) those of days wholly before it — which also
    /// keeps later compactions from writing such days.
    Drop {
        scope: u64,
        below: u64,
        cutoff_us: Option<i64>,
        ack: Option<Ack>,
    },
}

/// A log frame: a batch of writes, or the deletion of a scope.
enum Record<'a> {
    Writes(&'a [u8]),
    Delete { tenant: String, project: String },
}

const RECORD_WRITES: u8 = 0;
const RECORD_DELETE: u8 = 1;

impl Record<'_> {
    fn parse(payload: &[u8], v1: bool) -> Result<Record<'_>, String> {
        if v1 {
            return Ok(Record::Writes(payload));
        }
        match payload.split_first() {
            Some((&RECORD_WRITES, rest)) => Ok(Record::Writes(rest)),
            Some((&RECORD_DELETE, rest)) => {
                let text = std::str::from_utf8(rest).map_err(|e| e.to_string())?;
                let (tenant, project) =
                    text.split_once('\n').ok_or("a delete without a project")?;
                Ok(Record::Delete {
                    tenant: tenant.to_owned(),
                    project: project.to_owned(),
                })
            }
            _ => Err("a frame of unknown kind".into()),
        }
    }

    fn delete_payload(tenant: &str, project: &str) -> Vec<u8> {
        let mut payload = vec![RECORD_DELETE];
        payload.extend_from_slice(tenant.as_bytes());
        payload.push(b'\n');
        payload.extend_from_slice(project.as_bytes());
        payload
    }
}

/// A table made durable: see the crate docs for the guarantees.
pub struct Durable<T: Table> {
    table: Arc<RwLock<T>>,
    jobs: Mutex<Option<Sender<Job<T::Write>>>>,
    compact: Mutex<Option<Sender<CompactJob>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    dir: PathBuf,
}

fn generation_of(path: &Path, suffix: &str) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(StoreError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    Ok(paths)
}

/// The segments in `dir` by generation, with their names; stray temporary
/// files (a compaction cut short) are removed.
fn list_segments(dir: &Path) -> Result<BTreeMap<u64, Vec<(SegmentName, PathBuf)>>, StoreError> {
    let mut by_generation: BTreeMap<u64, Vec<(SegmentName, PathBuf)>> = BTreeMap::new();
    for path in list(dir)? {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".tmp") {
            std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
            continue;
        }
        match SegmentName::parse(&name) {
            Some(segment) => by_generation
                .entry(segment.generation)
                .or_default()
                .push((segment, path)),
            None => {
                tracing::warn!(path = %path.display(), "ignoring a file that is not a segment")
            }
        }
    }
    Ok(by_generation)
}

fn remove_files(dir: &Path, paths: &[PathBuf]) -> Result<(), StoreError> {
    for path in paths {
        std::fs::remove_file(path).map_err(StoreError::io(path))?;
    }
    if !paths.is_empty() {
        sync_dir(dir)?;
    }
    Ok(())
}

impl<T: Table> Durable<T> {
    /// Opens (or creates) the store in `dir`, loading segments and replaying
    /// the log into `table`.
    pub fn open(dir: &Path, mut table: T, options: Options) -> Result<Self, StoreError> {
        let wal_dir = dir.join("wal");
        let seg_dir = dir.join("segments");
        let snap_dir = dir.join("snapshots");
        for d in [dir, &wal_dir, &seg_dir, &snap_dir] {
            std::fs::create_dir_all(d).map_err(StoreError::io(d))?;
        }

        let loading = std::time::Instant::now();
        // The newest intact snapshot stands for every generation up to its own.
        let snapshotted = match restore::<T>(&snap_dir)? {
            Some((generation, restored)) => {
                table = restored;
                generation
            }
            None => 0,
        };
        let mut segments = list_segments(&seg_dir)?;
        let mut last_generation = segments
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(snapshotted);
        let mut logs = Vec::new();
        for path in list(&wal_dir)? {
            let Some(generation) = generation_of(&path, ".wal") else {
                continue;
            };
            last_generation = last_generation.max(generation);
            match segments.get(&generation) {
                // Compacted before a crash that came ahead of the log's
                // deletion: every segment its names promise is there.
                Some(done) if done.iter().all(|(s, _)| s.count as usize == done.len()) => {
                    std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
                }
                // A compaction cut short: its log is still the truth.
                Some(partial) => {
                    let paths: Vec<PathBuf> = partial.iter().map(|(_, p)| p.clone()).collect();
                    remove_files(&seg_dir, &paths)?;
                    segments.remove(&generation);
                    logs.push((generation, path));
                }
                None => logs.push((generation, path)),
            }
        }
        sync_dir(&wal_dir)?;
        // Deletions found in logs, whose older segments may still be on disk.
        let mut deletions: Vec<(u64, u64)> = Vec::new();
        let mut pending_logs = logs.iter().peekable();
        let mut replay_until = |table: &mut T, below: u64| -> Result<(), StoreError> {
            while let Some((generation, path)) = pending_logs.next_if(|(g, _)| *g < below) {
                // A log the snapshot already holds is only read for deletions.
                let apply = *generation > snapshotted;
                for scope in replay_log(table, *generation, path, apply)? {
                    deletions.push((scope, *generation));
                }
            }
            Ok(())
        };
        // Every generation is applied in order, segment or log (a log older
        // than the newest segment is one whose compaction failed). One thread
        // reads and decodes segments while this one applies them.
        let segment_count: usize = segments.values().map(Vec::len).sum();
        std::thread::scope(|scope| -> Result<(), StoreError> {
            // Segments the snapshot stands for are not decoded, but their
            // bytes are checked (beside the load): a damaged one stops the
            // store as it would without a snapshot.
            let covered: Vec<PathBuf> = segments
                .range(..=snapshotted)
                .flat_map(|(_, files)| files.iter().map(|(_, p)| p.clone()))
                .collect();
            let verifying = scope.spawn(move || covered.iter().try_for_each(|p| verify_segment(p)));
            let (tx, rx) = mpsc::sync_channel(2);
            let paths: Vec<(u64, PathBuf)> = segments
                .range(snapshotted + 1..)
                .flat_map(|(g, files)| files.iter().map(|(_, p)| (*g, p.clone())))
                .collect();
            scope.spawn(move || {
                for (generation, path) in paths {
                    let batches = match read_segment(&path) {
                        Ok(batches) => batches,
                        Err(e) => {
                            let _ = tx.send((generation, path, Err(e)));
                            return;
                        }
                    };
                    for batch in batches {
                        let failed = batch.is_err();
                        if tx.send((generation, path.clone(), batch)).is_err() || failed {
                            return;
                        }
                    }
                }
            });
            for (generation, path, batch) in rx {
                replay_until(&mut table, generation)?;
                table
                    .load_arrow(&batch?)
                    .map_err(|reason| StoreError::Corrupt { path, reason })?;
            }
            verifying.join().expect("segment check panicked")
        })?;
        replay_until(&mut table, u64::MAX)?;
        let to_compact: Vec<u64> = logs.iter().map(|(g, _)| *g).collect();
        tracing::info!(
            elapsed_ms = loading.elapsed().as_millis() as u64,
            snapshot = snapshotted,
            segments = segment_count,
            logs = logs.len(),
            "store loaded"
        );

        let log = FrameLog::create(&wal_dir.join(format!("{:020}.wal", last_generation + 1)))?;
        let table = Arc::new(RwLock::new(table));
        let (job_tx, job_rx) = mpsc::channel();
        let (compact_tx, compact_rx) = mpsc::channel();
        for generation in to_compact {
            let _ = compact_tx.send(CompactJob::Generation {
                generation,
                ack: None,
            });
        }
        // A deletion logged before a crash: its older segments go now (after
        // the compactions above, which skip the deleted scope's earlier writes).
        for (scope, below) in deletions {
            let _ = compact_tx.send(CompactJob::Drop {
                scope,
                below,
                cutoff_us: None,
                ack: None,
            });
        }
        let writer = {
            let table = table.clone();
            let wal_dir = wal_dir.clone();
            let compact_tx = compact_tx.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || {
                    let snapshots = Snapshots::new(&options);
                    write_loop(job_rx, log, table, wal_dir, compact_tx, options, snapshots)
                })
                .map_err(StoreError::io(dir))?
        };
        let compactor = {
            let table = table.clone();
            std::thread::Builder::new()
                .name("store-compactor".into())
                .spawn(move || compact_loop(compact_rx, table, wal_dir, seg_dir, snap_dir))
                .map_err(StoreError::io(dir))?
        };
        Ok(Self {
            table,
            jobs: Mutex::new(Some(job_tx)),
            compact: Mutex::new(Some(compact_tx)),
            threads: Mutex::new(vec![writer, compactor]),
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn submit(&self, job: impl FnOnce(Ack) -> Job<T::Write>) -> Result<(), StoreError> {
        ask(&self.jobs, job, "writer")
    }

    /// Makes `batch` durable, then applies it; returns once both are done.
    /// Blocks: call it from a blocking context.
    pub fn append(&self, batch: Vec<T::Write>) -> Result<(), StoreError> {
        let mut payload = vec![RECORD_WRITES];
        T::encode(&batch, &mut payload);
        self.submit(|ack| Job::Append {
            payload,
            batch,
            ack,
        })
    }

    /// Rotates the log and waits until everything written so far is in segments.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.submit(|ack| Job::Checkpoint {
            ack,
            snapshot: false,
        })
    }

    /// Deletes every record of `tenant`'s `project` written before this call:
    /// logged (so it survives a crash), removed from the table, its segments
    /// deleted, and the log rotated and compacted so that no file holds the
    /// records when this returns. Writes made after it are kept.
    pub fn delete_scope(&self, tenant: &str, project: &str) -> Result<(), StoreError> {
        self.submit(|ack| Job::Delete {
            tenant: tenant.to_owned(),
            project: project.to_owned(),
            ack,
        })?;
        self.checkpoint_and_snapshot()
    }

    /// [`Durable::checkpoint`], snapshotting the table at that boundary, so
    /// that no older snapshot holds records removed before it.
    fn checkpoint_and_snapshot(&self) -> Result<(), StoreError> {
        self.submit(|ack| Job::Checkpoint {
            ack,
            snapshot: true,
        })
    }

    /// Expires `tenant`'s `project` before `cutoff_us`: the table forgets
    /// its records placed before it, and segments of days wholly before it
    /// are deleted (now, and as later generations are compacted). With
    /// `flush_log`, the log is rotated and compacted too, so that no file
    /// holds such records when this returns; without, those still in the
    /// current log go when it rotates. Not logged: the caller keeps the
    /// retention policy and applies it again after a restart.
    pub fn expire(
        &self,
        tenant: &str,
        project: &str,
        cutoff_us: i64,
        flush_log: bool,
    ) -> Result<(), StoreError> {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        if flush_log {
            table.remove(tenant, project, Some(cutoff_us));
        } else {
            table.expire_lazily(tenant, project, cutoff_us);
        }
        drop(table);
        let drop = |ack| CompactJob::Drop {
            scope: scope_hash(tenant, project),
            below: u64::MAX,
            cutoff_us: Some(cutoff_us),
            ack: Some(ack),
        };
        ask(&self.compact, drop, "compactor")?;
        // The compactor knows the cutoff now, so compacting the current log
        // leaves the expired days out; the snapshot replaces any that held
        // expired records.
        if flush_log {
            self.checkpoint_and_snapshot()?;
        }
        Ok(())
    }

    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads back from disk what is stored of `tenant`'s `project`: the
    /// `columns` of its segments (`on_batch`, rows of other scopes that share
    /// a first-format segment or a scope hash included, for the caller to
    /// leave out) and the write batches of logs not yet compacted
    /// (`on_writes`, every scope's). For the rare question the in-memory
    /// table cannot answer on its own; it takes no lock, so writes go on.
    /// Logs are listed before segments, so a generation compacted meanwhile
    /// is found in its segments; a file removed meanwhile (compacted, or
    /// expired) is skipped.
    pub fn read_scope(
        &self,
        tenant: &str,
        project: &str,
        columns: &[&str],
        on_batch: &mut dyn FnMut(&RecordBatch) -> Result<(), String>,
        on_writes: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        // A log compacted between the listings and its reading is in
        // segments the listing missed: then everything is read again (ids
        // seen twice are allowed).
        for _ in 0..8 {
            if self.read_scope_once(tenant, project, columns, on_batch, on_writes)? {
                return Ok(());
            }
        }
        self.read_scope_once(tenant, project, columns, on_batch, on_writes)
            .map(|_| ())
    }

    /// One pass of [`Durable::read_scope`]; `false` when a listed log was
    /// gone by the time it was read.
    fn read_scope_once(
        &self,
        tenant: &str,
        project: &str,
        columns: &[&str],
        on_batch: &mut dyn FnMut(&RecordBatch) -> Result<(), String>,
        on_writes: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<bool, StoreError> {
        let gone = |e: &StoreError| matches!(e, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
        let logs: Vec<PathBuf> = list(&self.dir.join("wal"))?
            .into_iter()
            .filter(|p| generation_of(p, ".wal").is_some())
            .collect();
        let scope = scope_hash(tenant, project);
        let segments: Vec<PathBuf> = list(&self.dir.join("segments"))?
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(SegmentName::parse)
                    .is_some_and(|n| n.place.is_none_or(|(s, _)| s == scope))
            })
            .collect();
        for path in &segments {
            let batches = match read_segment_columns(path, Some(columns)) {
                Err(e) if gone(&e) => continue,
                other => other?,
            };
            for batch in batches {
                on_batch(&batch?).map_err(|reason| StoreError::Corrupt {
                    path: path.clone(),
                    reason,
                })?;
            }
        }
        for path in &logs {
            let frames = match read_frames(path) {
                Err(e) if gone(&e) => return Ok(false),
                other => other?,
            };
            // A torn tail here is a frame still being written: left alone.
            for payload in &frames.payloads {
                let corrupt = |reason: String| StoreError::Corrupt {
                    path: path.clone(),
                    reason,
                };
                if let Record::Writes(writes) =
                    Record::parse(payload, frames.v1).map_err(corrupt)?
                {
                    on_writes(writes).map_err(corrupt)?;
                }
            }
        }
        Ok(true)
    }

    /// Stops the writer and compactor after the work they already hold.
    pub fn close(&self) {
        self.jobs.lock().unwrap().take();
        self.compact.lock().unwrap().take();
        for thread in self.threads.lock().unwrap().drain(..) {
            let _ = thread.join();
        }
    }
}

/// Sends the job `job` makes to one of the store's threads (`thread`) and
/// waits for its acknowledgement.
fn ask<J>(
    to: &Mutex<Option<Sender<J>>>,
    job: impl FnOnce(Ack) -> J,
    thread: &str,
) -> Result<(), StoreError> {
    let (ack, done) = mpsc::sync_channel(1);
    let sent = match to.lock().unwrap().as_ref() {
        Some(jobs) => jobs.send(job(ack)).is_ok(),
        None => false,
    };
    if !sent {
        return Err(StoreError::Closed("the store is shut down".into()));
    }
    done.recv()
        .unwrap_or_else(|_| Err(StoreError::Closed(format!("the store's {thread} stopped"))))
}

impl<T: Table> Drop for Durable<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Replays one log file into `table` (with `apply`; else only reads it),
/// cutting off a torn tail first; returns the scopes it deleted.
fn replay_log<T: Table>(
    table: &mut T,
    generation: u64,
    path: &Path,
    apply: bool,
) -> Result<Vec<u64>, StoreError> {
    let frames = read_frames(path)?;
    if let Some(why) = &frames.torn {
        tracing::warn!(
            path = %path.display(),
            generation,
            dropped_bytes = frames.file_len - frames.valid_len,
            "dropping torn log tail: {why}"
        );
        truncate(
            path,
            frames
                .valid_len
                .max(crate::wal::MAGIC.len() as u64)
                .min(frames.file_len),
        )?;
    }
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason: format!("a frame passed its checksum but does not decode: {reason}"),
    };
    let mut deleted = Vec::new();
    for payload in &frames.payloads {
        match Record::parse(payload, frames.v1).map_err(corrupt)? {
            Record::Writes(writes) if apply => table.replay(writes).map_err(corrupt)?,
            Record::Writes(_) => {}
            Record::Delete { tenant, project } => {
                if apply {
                    table.remove(&tenant, &project, None);
                }
                deleted.push(scope_hash(&tenant, &project));
            }
        }
    }
    Ok(deleted)
}

/// The table from the newest intact snapshot in `dir`, with its generation;
/// a damaged one is reported, removed, and the next older one tried.
fn restore<T: Table>(dir: &Path) -> Result<Option<(u64, T)>, StoreError> {
    let mut files = list(dir)?;
    files.reverse();
    for path in files {
        if path.extension().and_then(|e| e.to_str()) != Some("snap") {
            std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
            continue;
        }
        let restored = snapshot::read(&path).and_then(|(generation, mapped)| {
            let mut reader = SnapshotReader::new(mapped.payload());
            let table = T::read_snapshot(&mut reader)
                .and_then(|t| match reader.is_at_end() {
                    true => Ok(t),
                    false => Err("bytes after the table".into()),
                })
                .map_err(|reason| StoreError::Corrupt {
                    path: path.clone(),
                    reason,
                })?;
            Ok((generation, table))
        });
        match restored {
            Ok(found) => return Ok(Some(found)),
            Err(e) => {
                // A cache, not the truth: load from the segments instead.
                tracing::warn!("ignoring a snapshot: {e}");
                std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
            }
        }
    }
    Ok(None)
}

/// When the writer snapshots the table.
struct Snapshots {
    /// Log bytes written since the last snapshot.
    since: u64,
    /// The size of the last snapshot.
    last_len: u64,
    /// A deletion happened: the next rotation snapshots, before the log that
    /// holds the deletion is compacted away.
    forced: bool,
    rotate_bytes: u64,
    /// A snapshot is queued or being written (the compactor clears it).
    in_flight: Arc<std::sync::atomic::AtomicBool>,
}

impl Snapshots {
    fn new(options: &Options) -> Self {
        Self {
            since: 0,
            last_len: 0,
            forced: false,
            rotate_bytes: options.rotate_bytes,
            in_flight: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Due at a rotation: after a deletion, or once the log written since
    /// the last one is twice its size (and at least four generations), so
    /// the bytes spent on snapshots stay below those logged; and never while
    /// the last one is still being written.
    fn due(&self) -> bool {
        self.forced
            || (self.since > 0
                && self.since >= (4 * self.rotate_bytes).max(2 * self.last_len)
                && !self.in_flight.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Due while writes pause: anything of note written since.
    fn due_when_idle(&self) -> bool {
        self.forced
            || (self.since > 0
                && self.since >= (1 << 20).max(self.last_len / 16)
                && !self.in_flight.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Snapshots `table` as of `generation` (closed, nothing later applied)
    /// and queues it for the compactor, ahead of that generation's compaction.
    fn take<T: Table>(&mut self, table: &RwLock<T>, generation: u64, compact: &Sender<CompactJob>) {
        let started = std::time::Instant::now();
        // Room for the last snapshot and a little growth.
        let mut out = SnapshotWriter::with_capacity((self.last_len + self.last_len / 8) as usize);
        if !table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .write_snapshot(&mut out)
        {
            return;
        }
        let bytes = snapshot::frame(generation, out);
        metrics::histogram!("polymeter_store_snapshot_seconds")
            .record(started.elapsed().as_secs_f64());
        self.last_len = bytes.len() as u64;
        self.since = 0;
        self.forced = false;
        self.in_flight
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = compact.send(CompactJob::Snapshot {
            generation,
            bytes,
            done: self.in_flight.clone(),
        });
    }
}

type Append<W> = (Vec<u8>, Vec<W>, Ack);

/// Makes `appends` durable with one fsync, applies them in order, and
/// acknowledges them; after a failure, refuses them and returns why.
fn commit<T: Table>(
    log: &mut FrameLog,
    table: &RwLock<T>,
    appends: Vec<Append<T::Write>>,
    frames: &mut Vec<u8>,
) -> Result<(), String> {
    if appends.is_empty() {
        return Ok(());
    }
    frames.clear();
    for (payload, _, _) in &appends {
        frame(payload, frames);
    }
    let started = std::time::Instant::now();
    let synced = log.append_synced(frames);
    metrics::histogram!("polymeter_store_fsync_seconds").record(started.elapsed().as_secs_f64());
    match synced {
        Ok(()) => {
            metrics::counter!("polymeter_store_log_bytes_total").increment(frames.len() as u64);
            metrics::counter!("polymeter_store_batches_total").increment(appends.len() as u64);
            let mut t = table.write().unwrap_or_else(|p| p.into_inner());
            let mut acks = Vec::with_capacity(appends.len());
            for (_, batch, ack) in appends {
                t.apply(batch);
                acks.push(ack);
            }
            drop(t);
            for ack in acks {
                let _ = ack.send(Ok(()));
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!("write-ahead log failed, refusing further writes: {e}");
            for (_, _, ack) in appends {
                let _ = ack.send(Err(StoreError::Closed(e.to_string())));
            }
            Err(e.to_string())
        }
    }
}

fn write_loop<T: Table>(
    jobs: Receiver<Job<T::Write>>,
    mut log: FrameLog,
    table: Arc<RwLock<T>>,
    wal_dir: PathBuf,
    compact: Sender<CompactJob>,
    options: Options,
    mut snapshots: Snapshots,
) {
    let mut generation = generation_of(log.path(), ".wal").unwrap_or(1);
    let mut failed: Option<String> = None;
    let mut frames = Vec::new();
    loop {
        let first = match jobs.recv_timeout(options.idle_snapshot) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if T::SNAPSHOTS && failed.is_none() && snapshots.due_when_idle() {
                    snapshot_now(
                        &mut log,
                        &mut generation,
                        &wal_dir,
                        &table,
                        &compact,
                        &mut snapshots,
                    );
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut group = vec![first];
        while group.len() < options.max_group {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut appends = Vec::with_capacity(group.len());
        let mut checkpoints = Vec::new();
        let logged_before = log.len();
        for job in group {
            if let Some(why) = &failed {
                // After a failed write the log's tail is unknown: appending
                // more could put acknowledged frames behind garbage.
                let ack = match job {
                    Job::Append { ack, .. }
                    | Job::Checkpoint { ack, .. }
                    | Job::Delete { ack, .. } => ack,
                };
                let _ = ack.send(Err(StoreError::Closed(why.clone())));
                continue;
            }
            match job {
                Job::Append {
                    payload,
                    batch,
                    ack,
                } => appends.push((payload, batch, ack)),
                Job::Checkpoint { ack, snapshot } => {
                    snapshots.forced |= snapshot;
                    checkpoints.push(ack);
                }
                Job::Delete {
                    tenant,
                    project,
                    ack,
                } => {
                    // Writes before the deletion are committed first, so it
                    // removes them, and only them.
                    failed =
                        commit(&mut log, &table, std::mem::take(&mut appends), &mut frames).err();
                    if let Some(why) = &failed {
                        let _ = ack.send(Err(StoreError::Closed(why.clone())));
                        continue;
                    }
                    let payload = Record::delete_payload(&tenant, &project);
                    frames.clear();
                    frame(&payload, &mut frames);
                    if let Err(e) = log.append_synced(&frames) {
                        tracing::error!("write-ahead log failed, refusing further writes: {e}");
                        failed = Some(e.to_string());
                        let _ = ack.send(Err(e));
                        continue;
                    }
                    table
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&tenant, &project, None);
                    snapshots.forced = true;
                    // Older generations are queued to the compactor before
                    // this, so every segment it must delete exists by then.
                    let _ = compact.send(CompactJob::Drop {
                        scope: scope_hash(&tenant, &project),
                        below: generation,
                        cutoff_us: None,
                        ack: Some(ack),
                    });
                }
            }
        }
        if failed.is_none() {
            failed = commit(&mut log, &table, appends, &mut frames).err();
        }
        snapshots.since += log.len().saturating_sub(logged_before);
        let rotate = !checkpoints.is_empty() || log.len() >= options.rotate_bytes;
        if let Some(why) = &failed {
            for ack in checkpoints {
                let _ = ack.send(Err(StoreError::Closed(why.clone())));
            }
            continue;
        }
        if rotate {
            match rotate_log(&mut log, &mut generation, &wal_dir) {
                Ok(closed) => {
                    if T::SNAPSHOTS && snapshots.due() {
                        snapshots.take(&table, closed, &compact);
                    }
                    let mut checkpoints = checkpoints.into_iter();
                    let _ = compact.send(CompactJob::Generation {
                        generation: closed,
                        ack: checkpoints.next(),
                    });
                    for ack in checkpoints {
                        // Later checkpoints in the same group wait on the same generation.
                        let _ = compact.send(CompactJob::Generation {
                            generation: closed,
                            ack: Some(ack),
                        });
                    }
                }
                Err(e) => {
                    tracing::error!("cannot rotate the log: {e}");
                    for ack in checkpoints {
                        let _ = ack.send(Err(StoreError::Closed(e.to_string())));
                    }
                }
            }
        }
    }
    // Shutting down: what was written since the last snapshot gets one, so
    // the next start loads one file.
    if T::SNAPSHOTS && failed.is_none() && snapshots.since > 0 {
        snapshot_now(
            &mut log,
            &mut generation,
            &wal_dir,
            &table,
            &compact,
            &mut snapshots,
        );
    }
}

/// Closes the current generation, snapshots the table at that boundary and
/// queues the generation's compaction (outside a group of writes: while
/// writes pause, and at shutdown).
fn snapshot_now<T: Table>(
    log: &mut FrameLog,
    generation: &mut u64,
    wal_dir: &Path,
    table: &RwLock<T>,
    compact: &Sender<CompactJob>,
    snapshots: &mut Snapshots,
) {
    match rotate_log(log, generation, wal_dir) {
        Ok(closed) => {
            snapshots.take(table, closed, compact);
            let _ = compact.send(CompactJob::Generation {
                generation: closed,
                ack: None,
            });
        }
        Err(e) => tracing::error!("cannot rotate the log: {e}"),
    }
}

/// Starts the next log generation; returns the one it closed.
fn rotate_log(log: &mut FrameLog, generation: &mut u64, wal_dir: &Path) -> Result<u64, StoreError> {
    let next = wal_dir.join(format!("{:020}.wal", *generation + 1));
    *log = FrameLog::create(&next)?;
    let closed = *generation;
    *generation += 1;
    Ok(closed)
}

fn compact_loop<T: Table>(
    jobs: Receiver<CompactJob>,
    table: Arc<RwLock<T>>,
    wal_dir: PathBuf,
    seg_dir: PathBuf,
    snap_dir: PathBuf,
) {
    let mut done = 0u64;
    // Each scope's retention cutoff, as last asked: compactions skip days
    // wholly before it.
    let mut cutoffs: HashMap<u64, i64> = HashMap::new();
    while let Ok(job) = jobs.recv() {
        match job {
            CompactJob::Generation { generation, ack } => {
                let result = if generation <= done {
                    Ok(())
                } else {
                    let started = std::time::Instant::now();
                    let result =
                        compact_generation(generation, &table, &cutoffs, &wal_dir, &seg_dir);
                    metrics::histogram!("polymeter_store_compaction_seconds")
                        .record(started.elapsed().as_secs_f64());
                    result
                };
                if let Err(e) = &result {
                    tracing::error!(generation, "compaction failed, the log is kept: {e}");
                } else {
                    done = done.max(generation);
                }
                if let Some(ack) = ack {
                    let _ = ack.send(result);
                }
            }
            CompactJob::Snapshot {
                generation,
                bytes,
                done,
            } => {
                if let Err(e) = write_snapshot(&snap_dir, generation, &bytes) {
                    tracing::error!(generation, "cannot write a snapshot: {e}");
                }
                drop(bytes);
                done.store(false, std::sync::atomic::Ordering::Release);
            }
            CompactJob::Drop {
                scope,
                below,
                cutoff_us,
                ack,
            } => {
                if let Some(cutoff) = cutoff_us {
                    cutoffs.insert(scope, cutoff);
                }
                let result = drop_segments(&seg_dir, scope, below, cutoff_us);
                if let Err(e) = &result {
                    tracing::error!("cannot delete segments: {e}");
                }
                if let Some(ack) = ack {
                    let _ = ack.send(result);
                }
            }
        }
    }
}

/// Publishes a snapshot (temporary file, fsync, rename) and deletes the
/// older ones it replaces.
fn write_snapshot(dir: &Path, generation: u64, bytes: &[u8]) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let path = snapshot::path_of(dir, generation);
    crate::replace_file(&path, bytes).map_err(StoreError::io(&path))?;
    for old in list(dir)? {
        if old != path {
            std::fs::remove_file(&old).map_err(StoreError::io(&old))?;
        }
    }
    metrics::counter!("polymeter_store_snapshot_bytes_total").increment(bytes.len() as u64);
    tracing::debug!(
        generation,
        bytes = bytes.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    Ok(())
}

/// Deletes `scope`'s segments of generations below `below`: every one, or
/// those of days wholly before `cutoff_us`.
fn drop_segments(
    seg_dir: &Path,
    scope: u64,
    below: u64,
    cutoff_us: Option<i64>,
) -> Result<(), StoreError> {
    let doomed: Vec<PathBuf> = list_segments(seg_dir)?
        .into_values()
        .flatten()
        .filter(|(name, _)| {
            name.generation < below
                && name.place.is_some_and(|(s, day)| {
                    s == scope && cutoff_us.is_none_or(|cutoff| day_before(day, cutoff))
                })
        })
        .map(|(_, path)| path)
        .collect();
    let files = doomed.len();
    remove_files(seg_dir, &doomed)?;
    if files > 0 {
        metrics::counter!("polymeter_store_segments_dropped_total").increment(files as u64);
        tracing::info!(files, "deleted segments");
    }
    Ok(())
}

/// Rows of one place, on their way into its segment.
struct Pending<W> {
    tenant: String,
    project: String,
    writer: Option<SegmentWriter>,
    writes: Vec<W>,
}

fn compact_generation<T: Table>(
    generation: u64,
    table: &RwLock<T>,
    cutoffs: &HashMap<u64, i64>,
    wal_dir: &Path,
    seg_dir: &Path,
) -> Result<(), StoreError> {
    let path = wal_dir.join(format!("{generation:020}.wal"));
    let frames = read_frames(&path)?;
    if let Some(why) = frames.torn {
        return Err(StoreError::Corrupt { path, reason: why });
    }
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.clone(),
        reason,
    };
    let records: Vec<Record<'_>> = frames
        .payloads
        .iter()
        .map(|p| Record::parse(p, frames.v1))
        .collect::<Result<_, _>>()
        .map_err(corrupt)?;
    // A scope deleted in this generation keeps only its writes after the deletion.
    let mut deleted_at: HashMap<u64, usize> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        if let Record::Delete { tenant, project } = record {
            deleted_at.insert(scope_hash(tenant, project), i);
        }
    }
    // Rows go to segments in chunks, so compaction's memory stays bounded.
    const CHUNK: usize = 1 << 16;
    let mut places: BTreeMap<(u64, i32), Pending<T::Write>> = BTreeMap::new();
    let flush = |pending: &mut Pending<T::Write>, day: i32| -> Result<(), StoreError> {
        if pending.writes.is_empty() {
            return Ok(());
        }
        let writer = match &mut pending.writer {
            Some(w) => w,
            none => none.insert(SegmentWriter::new(
                T::schema(),
                &Place {
                    tenant: &pending.tenant,
                    project: &pending.project,
                    day,
                },
            )?),
        };
        writer.write(&T::to_arrow(&pending.writes).map_err(StoreError::Encode)?)?;
        pending.writes.clear();
        Ok(())
    };
    for (i, record) in records.iter().enumerate() {
        let Record::Writes(payload) = record else {
            continue;
        };
        let writes = T::decode(payload).map_err(corrupt)?;
        let t = table.read().unwrap_or_else(|p| p.into_inner());
        // Each write's scope and day, with the scope's names when its place is new.
        type Placed = (u64, i32, Option<(String, String)>);
        let placed: Vec<Placed> = writes
            .iter()
            .map(|w| {
                let place = t.place(w);
                let scope = place.scope();
                let fresh = !places.contains_key(&(scope, place.day));
                (
                    scope,
                    place.day,
                    fresh.then(|| (place.tenant.to_owned(), place.project.to_owned())),
                )
            })
            .collect();
        drop(t);
        for (w, (scope, day, names)) in writes.into_iter().zip(placed) {
            if deleted_at.get(&scope).is_some_and(|&at| i < at)
                || cutoffs.get(&scope).is_some_and(|&c| day_before(day, c))
            {
                continue;
            }
            let pending = places.entry((scope, day)).or_insert_with(|| {
                let (tenant, project) = names.unwrap_or_default();
                Pending {
                    tenant,
                    project,
                    writer: None,
                    writes: Vec::new(),
                }
            });
            pending.writes.push(w);
            if pending.writes.len() >= CHUNK {
                flush(pending, day)?;
            }
        }
    }
    let count = places.len() as u32;
    let mut rows = 0;
    for (&(scope, day), pending) in places.iter_mut() {
        flush(pending, day)?;
        let writer = pending.writer.take().expect("a place has rows");
        rows += writer.rows();
        writer.finish(seg_dir, generation, (scope, day), count)?;
    }
    if count > 0 {
        sync_dir(seg_dir)?;
        metrics::counter!("polymeter_store_segments_total").increment(count as u64);
        metrics::counter!("polymeter_store_segment_rows_total").increment(rows as u64);
        tracing::debug!(
            generation,
            segments = count,
            rows,
            "compacted log generation"
        );
    }
    std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
    sync_dir(wal_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use std::collections::BTreeMap;

    /// Last write wins per key.
    #[derive(Default)]
    struct Kv(BTreeMap<String, i64>);

    impl Table for Kv {
        type Write = (String, i64);

        fn encode(batch: &[(String, i64)], buf: &mut Vec<u8>) {
            for (k, v) in batch {
                buf.extend_from_slice(format!("{k}\t{v}\n").as_bytes());
            }
        }

        fn decode(payload: &[u8]) -> Result<Vec<(String, i64)>, String> {
            std::str::from_utf8(payload)
                .map_err(|e| e.to_string())?
                .lines()
                .map(|l| {
                    let (k, v) = l.split_once('\t').ok_or("no tab")?;
                    Ok((k.to_owned(), v.parse().map_err(|_| "bad value")?))
                })
                .collect()
        }

        fn apply(&mut self, batch: Vec<(String, i64)>) {
            self.0.extend(batch);
        }

        fn place<'a>(&self, (k, _): &'a (String, i64)) -> Place<'a> {
            place_of(k)
        }

        fn remove(&mut self, tenant: &str, project: &str, before_us: Option<i64>) {
            self.0.retain(|k, _| {
                let place = place_of(k);
                !(place.tenant == tenant
                    && place.project == project
                    && before_us.is_none_or(|c| crate::place::day_before(place.day, c)))
            });
        }

        fn schema() -> SchemaRef {
            Arc::new(Schema::new(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Int64, false),
            ]))
        }

        fn to_arrow(batch: &[(String, i64)]) -> Result<RecordBatch, String> {
            let keys = StringArray::from_iter_values(batch.iter().map(|(k, _)| k.as_str()));
            let values = Int64Array::from_iter_values(batch.iter().map(|(_, v)| *v));
            RecordBatch::try_new(Self::schema(), vec![Arc::new(keys), Arc::new(values)])
                .map_err(|e| e.to_string())
        }

        fn from_arrow(batch: &RecordBatch) -> Result<Vec<(String, i64)>, String> {
            let keys = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or("key")?;
            let values = batch
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or("value")?;
            Ok((0..keys.len())
                .map(|i| (keys.value(i).to_owned(), values.value(i)))
                .collect())
        }
    }

    /// Keys are `tenant/project/day/name`; a key without them is placed in
    /// scope ("", "") on day 0.
    fn place_of(k: &str) -> Place<'_> {
        let mut parts = k.splitn(4, '/');
        let tenant = parts.next().unwrap_or_default();
        let project = parts.next().unwrap_or_default();
        let day = parts.next().and_then(|d| d.parse().ok()).unwrap_or(0);
        match parts.next() {
            Some(_) => Place {
                tenant,
                project,
                day,
            },
            None => Place {
                tenant: "",
                project: "",
                day: 0,
            },
        }
    }

    fn open(dir: &Path) -> Result<Durable<Kv>, StoreError> {
        Durable::open(dir, Kv::default(), Options::default())
    }

    fn contents(store: &Durable<Kv>) -> Vec<(String, i64)> {
        store.read().0.clone().into_iter().collect()
    }

    fn kv(k: &str, v: i64) -> (String, i64) {
        (k.to_owned(), v)
    }

    #[test]
    fn acknowledged_writes_survive_reopening_from_log_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path()).unwrap();
            store.append(vec![kv("a", 1), kv("b", 2)]).unwrap();
            store.checkpoint().unwrap();
            store.append(vec![kv("a", 3)]).unwrap();
            assert_eq!(contents(&store), [kv("a", 3), kv("b", 2)]);
        }
        let segments = list(&dir.path().join("segments")).unwrap();
        assert_eq!(segments.len(), 1, "{segments:?}");
        let store = open(dir.path()).unwrap();
        assert_eq!(contents(&store), [kv("a", 3), kv("b", 2)]);
    }

    #[test]
    fn concurrent_writers_share_group_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(dir.path()).unwrap());
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        store.append(vec![kv(&format!("{w}-{i}"), i)]).unwrap();
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        assert_eq!(store.read().0.len(), 400);
        drop(store);
        assert_eq!(open(dir.path()).unwrap().read().0.len(), 400);
    }

    #[test]
    fn a_torn_log_tail_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path()).unwrap();
            store.append(vec![kv("kept", 1)]).unwrap();
            store.append(vec![kv("torn", 2)]).unwrap();
        }
        let log = list(&dir.path().join("wal"))
            .unwrap()
            .into_iter()
            .next()
            .unwrap();
        let len = std::fs::metadata(&log).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        let store = open(dir.path()).unwrap();
        assert_eq!(contents(&store), [kv("kept", 1)]);
        // New writes go after the intact prefix and survive another reopen.
        store.append(vec![kv("later", 3)]).unwrap();
        drop(store);
        assert_eq!(
            contents(&open(dir.path()).unwrap()),
            [kv("kept", 1), kv("later", 3)]
        );
    }

    #[test]
    fn a_flipped_byte_in_a_segment_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path()).unwrap();
            store.append(vec![kv("a", 1)]).unwrap();
            store.checkpoint().unwrap();
        }
        let segment = list(&dir.path().join("segments")).unwrap().remove(0);
        let mut bytes = std::fs::read(&segment).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&segment, bytes).unwrap();
        let err = open(dir.path())
            .err()
            .expect("a corrupt segment must not open");
        let message = err.to_string();
        assert!(message.contains(segment.to_str().unwrap()), "{message}");
        assert!(message.contains("checksum mismatch"), "{message}");
    }

    #[test]
    fn a_log_whose_compaction_failed_survives_a_newer_segment() {
        // A segment of generation 2 (from a store whose generation 1 was empty) …
        let other = tempfile::tempdir().unwrap();
        {
            let store = open(other.path()).unwrap();
            store.checkpoint().unwrap();
            store.append(vec![kv("b", 2)]).unwrap();
            store.checkpoint().unwrap();
        }
        let segment = list(&other.path().join("segments")).unwrap().remove(0);
        assert!(segment
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("00000000000000000002-"));
        // … beside a log of generation 1 that was never compacted.
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path()).unwrap();
            store.append(vec![kv("a", 1), kv("b", 1)]).unwrap();
        }
        std::fs::copy(
            &segment,
            dir.path()
                .join("segments")
                .join(segment.file_name().unwrap()),
        )
        .unwrap();
        let store = open(dir.path()).unwrap();
        // Generation 1 is replayed, then generation 2 applies over it.
        assert_eq!(contents(&store), [kv("a", 1), kv("b", 2)]);
    }

    #[test]
    fn a_log_already_compacted_before_a_crash_is_not_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path()).unwrap();
            store.append(vec![kv("a", 1)]).unwrap();
        }
        // Simulate a crash between writing a segment and deleting its log:
        // keep a copy of the log, compact, then put the copy back.
        let log = list(&dir.path().join("wal")).unwrap().remove(0);
        let saved = std::fs::read(&log).unwrap();
        {
            let store = open(dir.path()).unwrap();
            store.checkpoint().unwrap();
        }
        std::fs::write(&log, saved).unwrap();
        let store = open(dir.path()).unwrap();
        assert_eq!(contents(&store), [kv("a", 1)]);
        assert!(!log.exists(), "the stale log is removed");
    }

    fn segment_names(dir: &Path) -> Vec<SegmentName> {
        list(&dir.join("segments"))
            .unwrap()
            .iter()
            .filter_map(|p| SegmentName::parse(p.file_name()?.to_str()?))
            .collect()
    }

    #[test]
    fn a_generation_is_compacted_into_one_segment_per_project_and_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        store
            .append(vec![
                kv("t/a/1/x", 1),
                kv("t/a/2/y", 2),
                kv("t/b/1/z", 3),
                kv("t/a/1/w", 4),
            ])
            .unwrap();
        store.checkpoint().unwrap();
        let mut places: Vec<(u64, i32, u32)> = segment_names(dir.path())
            .iter()
            .map(|n| (n.place.unwrap().0, n.place.unwrap().1, n.count))
            .collect();
        places.sort();
        let mut want = vec![
            (scope_hash("t", "a"), 1, 3),
            (scope_hash("t", "a"), 2, 3),
            (scope_hash("t", "b"), 1, 3),
        ];
        want.sort();
        assert_eq!(places, want);
        drop(store);
        assert_eq!(open(dir.path()).unwrap().read().0.len(), 4);
    }

    #[test]
    fn a_deleted_project_is_gone_from_table_and_disk_and_later_writes_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        store
            .append(vec![kv("t/a/1/old", 1), kv("t/b/1/other", 2)])
            .unwrap();
        store.checkpoint().unwrap();
        // Uncompacted writes of the project, before the deletion, go too.
        store.append(vec![kv("t/a/2/pending", 3)]).unwrap();
        store.delete_scope("t", "a").unwrap();
        store.append(vec![kv("t/a/3/new", 4)]).unwrap();
        assert_eq!(contents(&store), [kv("t/a/3/new", 4), kv("t/b/1/other", 2)]);
        assert!(segment_names(dir.path())
            .iter()
            .all(|n| n.place.unwrap().0 != scope_hash("t", "a")));
        store.checkpoint().unwrap();
        drop(store);
        let store = open(dir.path()).unwrap();
        assert_eq!(contents(&store), [kv("t/a/3/new", 4), kv("t/b/1/other", 2)]);
    }

    #[test]
    fn a_deletion_logged_before_a_crash_still_deletes_the_segments() {
        let dir = tempfile::tempdir().unwrap();
        let seg_dir = dir.path().join("segments");
        let store = open(dir.path()).unwrap();
        store
            .append(vec![kv("t/a/1/old", 1), kv("t/b/1/other", 2)])
            .unwrap();
        store.checkpoint().unwrap();
        let saved: Vec<(PathBuf, Vec<u8>)> = list(&seg_dir)
            .unwrap()
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        // Only the deletion's first step (logged, applied, older segments
        // deleted), without the rotation that follows it.
        store
            .submit(|ack| Job::Delete {
                tenant: "t".into(),
                project: "a".into(),
                ack,
            })
            .unwrap();
        drop(store);
        // The crash came after the deletion was logged, before its files went.
        for (path, bytes) in saved {
            std::fs::write(path, bytes).unwrap();
        }
        let store = open(dir.path()).unwrap();
        assert_eq!(contents(&store), [kv("t/b/1/other", 2)]);
        store.checkpoint().unwrap();
        assert!(segment_names(dir.path())
            .iter()
            .all(|n| n.place.unwrap().0 != scope_hash("t", "a")));
        drop(store);
        assert_eq!(contents(&open(dir.path()).unwrap()), [kv("t/b/1/other", 2)]);
    }

    #[test]
    fn a_compaction_cut_short_is_done_again_from_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        store
            .append(vec![kv("t/a/1/x", 1), kv("t/a/2/y", 2)])
            .unwrap();
        drop(store);
        let log = list(&dir.path().join("wal")).unwrap().remove(0);
        let saved = std::fs::read(&log).unwrap();
        open(dir.path()).unwrap().checkpoint().unwrap();
        // One of the generation's two segments never made it, and the log is still there.
        let first = list(&dir.path().join("segments")).unwrap().remove(0);
        std::fs::remove_file(first).unwrap();
        std::fs::write(&log, saved).unwrap();
        let store = open(dir.path()).unwrap();
        assert_eq!(contents(&store), [kv("t/a/1/x", 1), kv("t/a/2/y", 2)]);
        store.checkpoint().unwrap();
        assert_eq!(segment_names(dir.path()).len(), 2);
        drop(store);
        assert_eq!(
            contents(&open(dir.path()).unwrap()),
            [kv("t/a/1/x", 1), kv("t/a/2/y", 2)]
        );
    }

    #[test]
    fn expiring_deletes_whole_days_before_the_cutoff_and_nothing_else() {
        use crate::place::DAY_US;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        store
            .append(vec![
                kv("t/a/1/x", 1),
                kv("t/a/2/y", 2),
                kv("t/a/3/z", 3),
                kv("t/b/1/o", 4),
            ])
            .unwrap();
        store.checkpoint().unwrap();
        // A write of an expired day still in the log is not compacted.
        store.append(vec![kv("t/a/1/late", 5)]).unwrap();
        store.expire("t", "a", 3 * DAY_US, false).unwrap();
        assert_eq!(contents(&store), [kv("t/a/3/z", 3), kv("t/b/1/o", 4)]);
        store.append(vec![kv("t/a/2/later", 6)]).unwrap();
        store.checkpoint().unwrap();
        let mut left: Vec<(u64, i32)> = segment_names(dir.path())
            .iter()
            .map(|n| n.place.unwrap())
            .collect();
        left.sort();
        let mut want = vec![(scope_hash("t", "a"), 3), (scope_hash("t", "b"), 1)];
        want.sort();
        assert_eq!(left, want);
    }

    /// [`Kv`] with snapshots.
    #[derive(Default)]
    struct SnapKv(Kv);

    impl Table for SnapKv {
        type Write = (String, i64);
        const SNAPSHOTS: bool = true;

        fn encode(batch: &[(String, i64)], buf: &mut Vec<u8>) {
            Kv::encode(batch, buf)
        }
        fn decode(payload: &[u8]) -> Result<Vec<(String, i64)>, String> {
            Kv::decode(payload)
        }
        fn apply(&mut self, batch: Vec<(String, i64)>) {
            self.0.apply(batch)
        }
        fn schema() -> SchemaRef {
            Kv::schema()
        }
        fn to_arrow(batch: &[(String, i64)]) -> Result<RecordBatch, String> {
            Kv::to_arrow(batch)
        }
        fn from_arrow(batch: &RecordBatch) -> Result<Vec<(String, i64)>, String> {
            Kv::from_arrow(batch)
        }
        fn place<'a>(&self, w: &'a (String, i64)) -> Place<'a> {
            self.0.place(w)
        }
        fn remove(&mut self, tenant: &str, project: &str, before_us: Option<i64>) {
            self.0.remove(tenant, project, before_us)
        }
        fn write_snapshot(&self, out: &mut SnapshotWriter) -> bool {
            out.u64(self.0 .0.len() as u64);
            for (k, v) in &self.0 .0 {
                out.str(k);
                out.u64(*v as u64);
            }
            true
        }
        fn read_snapshot(from: &mut SnapshotReader<'_>) -> Result<Self, String> {
            let mut t = SnapKv::default();
            for _ in 0..from.count()? {
                let k = from.string()?;
                t.0 .0.insert(k, from.u64()? as i64);
            }
            Ok(t)
        }
    }

    fn open_snap(dir: &Path) -> Durable<SnapKv> {
        Durable::open(dir, SnapKv::default(), Options::default()).unwrap()
    }

    /// Stops the store's threads after the work they hold, without the
    /// snapshot a close takes.
    fn stop_without_snapshot(store: &Durable<SnapKv>) {
        store.jobs.lock().unwrap().take();
        let threads: Vec<_> = store.threads.lock().unwrap().drain(..).collect();
        store.compact.lock().unwrap().take();
        for t in threads {
            t.join().unwrap();
        }
    }

    fn snap_contents(store: &Durable<SnapKv>) -> Vec<(String, i64)> {
        store.read().0 .0.clone().into_iter().collect()
    }

    #[test]
    fn a_restart_loads_the_snapshot_and_then_only_later_generations() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_snap(dir.path());
            store
                .append(vec![kv("t/a/1/x", 1), kv("t/a/1/y", 2)])
                .unwrap();
        }
        // Closing snapshotted everything; the segments it stands for are
        // not read again (here: not even there).
        assert_eq!(list(&dir.path().join("snapshots")).unwrap().len(), 1);
        for segment in list(&dir.path().join("segments")).unwrap() {
            std::fs::remove_file(segment).unwrap();
        }
        let store = open_snap(dir.path());
        assert_eq!(snap_contents(&store), [kv("t/a/1/x", 1), kv("t/a/1/y", 2)]);
        // Later writes come from the log on top of the snapshot.
        store.append(vec![kv("t/a/1/x", 3)]).unwrap();
        drop(store);
        assert_eq!(
            snap_contents(&open_snap(dir.path())),
            [kv("t/a/1/x", 3), kv("t/a/1/y", 2)]
        );
    }

    #[test]
    fn a_damaged_snapshot_is_ignored_and_the_segments_load() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_snap(dir.path());
            store.append(vec![kv("t/a/1/x", 1)]).unwrap();
        }
        let snapshot = list(&dir.path().join("snapshots")).unwrap().remove(0);
        let mut bytes = std::fs::read(&snapshot).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&snapshot, bytes).unwrap();
        let store = open_snap(dir.path());
        assert_eq!(snap_contents(&store), [kv("t/a/1/x", 1)]);
        assert!(!snapshot.exists(), "the damaged snapshot is removed");
    }

    /// A crash while a snapshot is written leaves its temporary file, or
    /// (had the rename come first) a file cut short: neither is read, both
    /// go, and the store loads the previous snapshot and the logs after it.
    #[test]
    fn a_snapshot_cut_short_by_a_crash_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_snap(dir.path());
            store.append(vec![kv("t/a/1/x", 1)]).unwrap();
        }
        let snaps = dir.path().join("snapshots");
        let good = list(&snaps).unwrap().remove(0);
        let bytes = std::fs::read(&good).unwrap();
        {
            let store = open_snap(dir.path());
            store.append(vec![kv("t/a/1/y", 2)]).unwrap();
            // Stopped without the shutdown snapshot, as a crash would.
            stop_without_snapshot(&store);
        }
        let later = |g: u64| snapshot::path_of(&snaps, g);
        let tmp = PathBuf::from(format!("{}.tmp", later(900).display()));
        std::fs::write(&tmp, &bytes[..bytes.len() / 2]).unwrap();
        std::fs::write(later(901), &bytes[..bytes.len() - 3]).unwrap();
        let store = open_snap(dir.path());
        assert_eq!(snap_contents(&store), [kv("t/a/1/x", 1), kv("t/a/1/y", 2)]);
        assert!(!tmp.exists() && !later(901).exists(), "both are removed");
        // The intact one (or a newer one the store has written since).
        let kept = list(&snaps).unwrap();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0] == good || kept[0].extension().is_some_and(|e| e == "snap"));
    }

    #[test]
    fn a_deletion_after_a_snapshot_stays_deleted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_snap(dir.path());
            store
                .append(vec![kv("t/a/1/x", 1), kv("t/b/1/y", 2)])
                .unwrap();
        }
        {
            let store = open_snap(dir.path());
            store.delete_scope("t", "a").unwrap();
            // Only what the deletion itself wrote: no snapshot at close.
            stop_without_snapshot(&store);
        }
        assert_eq!(snap_contents(&open_snap(dir.path())), [kv("t/b/1/y", 2)]);
    }
}
