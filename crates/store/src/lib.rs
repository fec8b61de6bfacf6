//! The embedded store machinery every owning service uses, whatever its
//! records: a [`Table`] says how its writes are encoded and applied;
//! [`Durable`] makes them durable and recoverable.
//!
//! ```text
//! <dir>/wal/<gen>.wal          append-only log, checksummed frames
//! <dir>/segments/<gen>-<crc32>-<scope>-<day>-<count>.parquet
//!                              immutable Apache Parquet segments, one per
//!                              project and UTC day of each generation
//! ```
//!
//! * A write is acknowledged only after its frame is fsynced. One writer
//!   thread drains every pending write into one `write` + one `fdatasync`
//!   (group commit), applies them to the in-memory table in log order, then
//!   acknowledges them all.
//! * The log rotates to a new generation once it passes a size; a compactor
//!   thread turns each closed generation into Parquet segments, one per
//!   project and day its records are placed on ([`Table::place`]; each
//!   written to a temporary file, fsynced, renamed), and then deletes that
//!   log file. A generation whose segments are not all there (a crash during
//!   compaction) is compacted again from its log.
//! * The writer thread snapshots the table ([`Table::write_snapshot`]) at a
//!   generation boundary once enough has been written since the last one
//!   (or once writes pause), and after a deletion; the compactor writes it
//!   to `<dir>/snapshots/`. Opening loads the newest intact snapshot and then
//!   only the segments and logs of later generations (see [`snapshot`]).
//! * Deleting a project ([`Durable::delete_scope`]) is a log record, so it
//!   survives a crash; it removes the project from the table and deletes its
//!   segments. Expiring a project's old records ([`Durable::expire`]) removes
//!   them from the table and deletes its segments of days wholly past the
//!   cutoff: whole files, nothing rewritten.
//! * Tables hold their columns compactly with [`column::Column`] (grows by
//!   an eighth) and [`packed`] (values per block in the fewest bytes).
//! * Opening loads the segments in generation order, then replays the logs
//!   newer than the last segment. A torn or corrupt log tail (the checksum
//!   disagrees, or a frame is cut short) is dropped and logged, never misread.
//!   A segment whose bytes no longer match the checksum in its name is
//!   reported by path and the store refuses to open.

pub mod column;
mod durable;
pub mod interner;
pub mod packed;
pub mod place;
mod segment;
pub mod snapshot;
mod wal;

pub use column::Column;
pub use durable::{Durable, Options};
pub use interner::Interner;
pub use packed::Packed;
pub use place::Place;
pub use segment::{read_segment, SegmentWriter};
pub use snapshot::{SnapshotReader, SnapshotWriter};
pub use wal::{read_frames, FrameLog};

/// Runs store work that blocks (a scan, an fsync) on the runtime's blocking
/// pool, so it never stalls the threads serving requests. A worker that
/// panicked becomes `failed(message)`.
pub async fn blocking<T: Send + 'static, E: Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
    failed: impl FnOnce(String) -> E,
) -> Result<T, E> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(failed(format!("store worker failed: {e}"))),
    }
}

/// Replaces the file at `path` with `bytes` so that a crash leaves either
/// the old contents or the new: written to a temporary file beside it,
/// fsynced, renamed over it, and the directory fsynced.
pub fn replace_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Stored data is damaged; the store will not answer from it.
    #[error("corrupt {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The store has stopped (shutting down, or its writer failed).
    #[error("store closed: {0}")]
    Closed(String),
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl polymeter_error::HasKind for StoreError {
    fn kind(&self) -> polymeter_error::ErrorKind {
        use polymeter_error::ErrorKind;
        match self {
            StoreError::Io { .. } | StoreError::Closed(_) => ErrorKind::Unavailable,
            StoreError::Corrupt { .. } => ErrorKind::DataLoss,
            StoreError::Encode(_) => ErrorKind::Internal,
        }
    }
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

/// The records a store holds, and how they travel through log and segments.
pub trait Table: Send + Sync + 'static {
    /// One write (a record, or part of one, that [`Table::apply`] merges in).
    type Write: Send + 'static;

    /// Appends the log frame payload of a batch to `buf`.
    fn encode(batch: &[Self::Write], buf: &mut Vec<u8>);
    /// The inverse of [`Table::encode`].
    fn decode(payload: &[u8]) -> Result<Vec<Self::Write>, String>;
    /// Merges a batch into the in-memory state. Must not fail: anything that
    /// could make it fail is checked before the batch reaches the log.
    fn apply(&mut self, batch: Vec<Self::Write>);

    /// The Arrow schema of segments.
    fn schema() -> SchemaRef;
    /// Writes as one segment's rows, in log order.
    fn to_arrow(batch: &[Self::Write]) -> Result<RecordBatch, String>;
    /// The inverse of [`Table::to_arrow`].
    fn from_arrow(batch: &RecordBatch) -> Result<Vec<Self::Write>, String>;

    /// Applies a segment's rows; a table may read the arrays directly
    /// instead of materialising writes.
    fn load_arrow(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let writes = Self::from_arrow(batch)?;
        self.apply(writes);
        Ok(())
    }

    /// Where `write` is kept on disk: its scope and the UTC day of the record
    /// it belongs to, as the table knows that record now (a later half of a
    /// record follows the record's day, so all of a record's writes in a
    /// generation share one segment and keep their order).
    fn place<'a>(&self, write: &'a Self::Write) -> Place<'a>;

    /// Forgets `tenant`'s `project`: every record, or with `before_us` the
    /// records placed before that time.
    fn remove(&mut self, tenant: &str, project: &str, before_us: Option<i64>);

    /// The routine expiry of `tenant`'s `project` before `before_us`: like
    /// [`Table::remove`], but a table may leave the records in place until
    /// enough have expired to be worth the work (queries leave them out by
    /// the same cutoff meanwhile).
    fn expire_lazily(&mut self, tenant: &str, project: &str, before_us: i64) {
        self.remove(tenant, project, Some(before_us));
    }

    /// Whether the table keeps snapshots ([`Table::write_snapshot`]);
    /// without, a restart loads the segments.
    const SNAPSHOTS: bool = false;

    /// Writes the whole in-memory state for a fast restart; `false` when the
    /// table keeps no snapshots.
    fn write_snapshot(&self, _out: &mut SnapshotWriter) -> bool {
        false
    }

    /// The state [`Table::write_snapshot`] wrote.
    fn read_snapshot(_from: &mut SnapshotReader<'_>) -> Result<Self, String>
    where
        Self: Sized,
    {
        Err("this table keeps no snapshots".into())
    }

    /// Applies one log frame; a table may decode it straight into its state.
    fn replay(&mut self, payload: &[u8]) -> Result<(), String> {
        let writes = Self::decode(payload)?;
        self.apply(writes);
        Ok(())
    }
}
