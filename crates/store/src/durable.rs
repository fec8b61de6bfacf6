//! [`Durable`]: a [`Table`] behind a write-ahead log and Parquet segments.

use crate::segment::{parse_name, read_segment, SegmentWriter};
use crate::wal::{frame, read_frames, sync_dir, truncate, FrameLog};
use crate::{StoreError, Table};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

#[derive(Debug, Clone)]
pub struct Options {
    /// The log rotates (and its closed generation is compacted into a
    /// segment) once it grows past this many bytes.
    pub rotate_bytes: u64,
    /// Most writes one group commit takes at once.
    pub max_group: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rotate_bytes: 64 << 20,
            max_group: 4096,
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
    /// Rotate the log now and acknowledge once its generation is a segment.
    Checkpoint { ack: Ack },
}

/// A table made durable: see the crate docs for the guarantees.
pub struct Durable<T: Table> {
    table: Arc<RwLock<T>>,
    jobs: Mutex<Option<Sender<Job<T::Write>>>>,
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

impl<T: Table> Durable<T> {
    /// Opens (or creates) the store in `dir`, loading segments and replaying
    /// the log into `table`.
    pub fn open(dir: &Path, mut table: T, options: Options) -> Result<Self, StoreError> {
        let wal_dir = dir.join("wal");
        let seg_dir = dir.join("segments");
        for d in [dir, &wal_dir, &seg_dir] {
            std::fs::create_dir_all(d).map_err(StoreError::io(d))?;
        }

        let loading = std::time::Instant::now();
        let mut segments = Vec::new();
        for path in list(&seg_dir)? {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if name.ends_with(".tmp") {
                // A compaction that crashed before its rename; its log is still there.
                std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
                continue;
            }
            match parse_name(&name) {
                Some((generation, _)) => segments.push((generation, path)),
                None => {
                    tracing::warn!(path = %path.display(), "ignoring a file that is not a segment")
                }
            }
        }
        // A log whose generation is already a segment was compacted before a
        // crash that came ahead of its deletion. Any other log is replayed,
        // even one older than the newest segment (its compaction failed), and
        // every generation is applied in order, segment or log.
        let compacted: std::collections::HashSet<u64> = segments.iter().map(|(g, _)| *g).collect();
        let mut last_generation = segments.iter().map(|(g, _)| *g).max().unwrap_or(0);
        let mut logs = Vec::new();
        for path in list(&wal_dir)? {
            let Some(generation) = generation_of(&path, ".wal") else {
                continue;
            };
            last_generation = last_generation.max(generation);
            if compacted.contains(&generation) {
                std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
            } else {
                logs.push((generation, path));
            }
        }
        sync_dir(&wal_dir)?;
        let mut pending_logs = logs.iter().peekable();
        let mut replay_until = |table: &mut T, below: u64| -> Result<(), StoreError> {
            while let Some((generation, path)) = pending_logs.next_if(|(g, _)| *g < below) {
                replay_log(table, *generation, path)?;
            }
            Ok(())
        };
        // One thread reads and decodes segments while this one applies them.
        std::thread::scope(|scope| -> Result<(), StoreError> {
            let (tx, rx) = mpsc::sync_channel(2);
            let paths: Vec<(u64, PathBuf)> = segments.clone();
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
            Ok(())
        })?;
        replay_until(&mut table, u64::MAX)?;
        let to_compact: Vec<u64> = logs.iter().map(|(g, _)| *g).collect();
        tracing::info!(
            elapsed_ms = loading.elapsed().as_millis() as u64,
            segments = segments.len(),
            logs = logs.len(),
            "store loaded"
        );

        let log = FrameLog::create(&wal_dir.join(format!("{:020}.wal", last_generation + 1)))?;
        let table = Arc::new(RwLock::new(table));
        let (job_tx, job_rx) = mpsc::channel();
        let (compact_tx, compact_rx) = mpsc::channel();
        for generation in to_compact {
            let _ = compact_tx.send((generation, None));
        }
        let writer = {
            let table = table.clone();
            let wal_dir = wal_dir.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || write_loop(job_rx, log, table, wal_dir, compact_tx, options))
                .map_err(StoreError::io(dir))?
        };
        let compactor = std::thread::Builder::new()
            .name("store-compactor".into())
            .spawn(move || compact_loop::<T>(compact_rx, wal_dir, seg_dir))
            .map_err(StoreError::io(dir))?;
        Ok(Self {
            table,
            jobs: Mutex::new(Some(job_tx)),
            threads: Mutex::new(vec![writer, compactor]),
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn submit(&self, job: impl FnOnce(Ack) -> Job<T::Write>) -> Result<(), StoreError> {
        let (ack, done) = mpsc::sync_channel(1);
        let sent = match self.jobs.lock().unwrap().as_ref() {
            Some(jobs) => jobs.send(job(ack)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Closed("the store is shut down".into()));
        }
        done.recv()
            .unwrap_or_else(|_| Err(StoreError::Closed("the store's writer stopped".into())))
    }

    /// Makes `batch` durable, then applies it; returns once both are done.
    /// Blocks: call it from a blocking context.
    pub fn append(&self, batch: Vec<T::Write>) -> Result<(), StoreError> {
        let mut payload = Vec::new();
        T::encode(&batch, &mut payload);
        self.submit(|ack| Job::Append {
            payload,
            batch,
            ack,
        })
    }

    /// Rotates the log and waits until everything written so far is in segments.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.submit(|ack| Job::Checkpoint { ack })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the writer and compactor after the work they already hold.
    pub fn close(&self) {
        self.jobs.lock().unwrap().take();
        for thread in self.threads.lock().unwrap().drain(..) {
            let _ = thread.join();
        }
    }
}

impl<T: Table> Drop for Durable<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Replays one log file into `table`, cutting off a torn tail first.
fn replay_log<T: Table>(table: &mut T, generation: u64, path: &Path) -> Result<(), StoreError> {
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
    for payload in &frames.payloads {
        table
            .replay(payload)
            .map_err(|reason| StoreError::Corrupt {
                path: path.to_owned(),
                reason: format!("a frame passed its checksum but does not decode: {reason}"),
            })?;
    }
    Ok(())
}

type CompactJob = (u64, Option<Ack>);

fn write_loop<T: Table>(
    jobs: Receiver<Job<T::Write>>,
    mut log: FrameLog,
    table: Arc<RwLock<T>>,
    wal_dir: PathBuf,
    compact: Sender<CompactJob>,
    options: Options,
) {
    let mut generation = generation_of(log.path(), ".wal").unwrap_or(1);
    let mut failed: Option<String> = None;
    let mut frames = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < options.max_group {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut appends = Vec::with_capacity(group.len());
        let mut checkpoints = Vec::new();
        for job in group {
            match job {
                Job::Append {
                    payload,
                    batch,
                    ack,
                } => appends.push((payload, batch, ack)),
                Job::Checkpoint { ack } => checkpoints.push(ack),
            }
        }
        if let Some(why) = &failed {
            // After a failed write the log's tail is unknown: appending more
            // could put acknowledged frames behind garbage.
            for (_, _, ack) in appends {
                let _ = ack.send(Err(StoreError::Closed(why.clone())));
            }
            for ack in checkpoints {
                let _ = ack.send(Err(StoreError::Closed(why.clone())));
            }
            continue;
        }
        if !appends.is_empty() {
            frames.clear();
            for (payload, _, _) in &appends {
                frame(payload, &mut frames);
            }
            let started = std::time::Instant::now();
            let synced = log.append_synced(&frames);
            metrics::histogram!("polymeter_store_fsync_seconds")
                .record(started.elapsed().as_secs_f64());
            match synced {
                Ok(()) => {
                    metrics::counter!("polymeter_store_log_bytes_total")
                        .increment(frames.len() as u64);
                    metrics::counter!("polymeter_store_batches_total")
                        .increment(appends.len() as u64);
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
                }
                Err(e) => {
                    tracing::error!("write-ahead log failed, refusing further writes: {e}");
                    failed = Some(e.to_string());
                    for (_, _, ack) in appends {
                        let _ = ack.send(Err(StoreError::Closed(e.to_string())));
                    }
                }
            }
        }
        let rotate = !checkpoints.is_empty() || log.len() >= options.rotate_bytes;
        if rotate && failed.is_none() {
            let next = wal_dir.join(format!("{:020}.wal", generation + 1));
            match FrameLog::create(&next) {
                Ok(new_log) => {
                    log = new_log;
                    let closed = generation;
                    generation += 1;
                    let mut checkpoints = checkpoints.into_iter();
                    let first = checkpoints.next();
                    let _ = compact.send((closed, first));
                    for ack in checkpoints {
                        // Later checkpoints in the same group wait on the same generation.
                        let _ = compact.send((closed, Some(ack)));
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
}

fn compact_loop<T: Table>(jobs: Receiver<CompactJob>, wal_dir: PathBuf, seg_dir: PathBuf) {
    let mut done = 0u64;
    while let Ok((generation, ack)) = jobs.recv() {
        let result = if generation <= done {
            Ok(())
        } else {
            compact_generation::<T>(generation, &wal_dir, &seg_dir)
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
}

fn compact_generation<T: Table>(
    generation: u64,
    wal_dir: &Path,
    seg_dir: &Path,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let done = compact_generation_inner::<T>(generation, wal_dir, seg_dir);
    metrics::histogram!("polymeter_store_compaction_seconds")
        .record(started.elapsed().as_secs_f64());
    done
}

fn compact_generation_inner<T: Table>(
    generation: u64,
    wal_dir: &Path,
    seg_dir: &Path,
) -> Result<(), StoreError> {
    let path = wal_dir.join(format!("{generation:020}.wal"));
    let frames = read_frames(&path)?;
    if let Some(why) = frames.torn {
        return Err(StoreError::Corrupt { path, reason: why });
    }
    // Rows go to the segment in chunks, so compaction's memory stays bounded.
    const CHUNK: usize = 1 << 16;
    let mut segment = SegmentWriter::new(T::schema())?;
    let mut writes = Vec::new();
    for (i, payload) in frames.payloads.iter().enumerate() {
        writes.extend(T::decode(payload).map_err(|reason| StoreError::Corrupt {
            path: path.clone(),
            reason,
        })?);
        if writes.len() >= CHUNK || i + 1 == frames.payloads.len() {
            segment.write(&T::to_arrow(&writes).map_err(StoreError::Encode)?)?;
            writes.clear();
        }
    }
    if segment.rows() > 0 {
        let rows = segment.rows();
        let published = segment.finish(seg_dir, generation)?;
        metrics::counter!("polymeter_store_segments_total").increment(1);
        metrics::counter!("polymeter_store_segment_rows_total").increment(rows as u64);
        tracing::debug!(segment = %published.display(), rows, "compacted log generation");
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
}
