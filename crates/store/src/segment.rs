//! Immutable Parquet segments. A segment's file name carries its generation
//! and the CRC-32 of its bytes (`<gen>-<crc>.parquet`), so a damaged segment is
//! caught before a single row is read from it, and the name is published by
//! one atomic rename.

use crate::wal::sync_dir;
use crate::StoreError;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) fn segment_name(generation: u64, crc: u32) -> String {
    format!("{generation:020}-{crc:08x}.parquet")
}

/// `(generation, crc)` from a segment file name.
pub(crate) fn parse_name(name: &str) -> Option<(u64, u32)> {
    let stem = name.strip_suffix(".parquet")?;
    let (generation, crc) = stem.split_once('-')?;
    Some((generation.parse().ok()?, u32::from_str_radix(crc, 16).ok()?))
}

fn encode(e: parquet::errors::ParquetError) -> StoreError {
    StoreError::Encode(e.to_string())
}

/// A segment being written batch by batch, so compaction never holds a whole
/// generation's rows at once.
pub struct SegmentWriter {
    writer: ArrowWriter<Vec<u8>>,
    rows: usize,
}

impl SegmentWriter {
    pub fn new(schema: SchemaRef) -> Result<Self, StoreError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by("polymeter".into())
            .build();
        Ok(Self {
            writer: ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(encode)?,
            rows: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StoreError> {
        self.rows += batch.num_rows();
        self.writer.write(batch).map_err(encode)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Publishes the segment as generation `generation` in `dir`: written to
    /// a temporary file, fsynced, renamed, directory fsynced. Returns its path.
    pub fn finish(self, dir: &Path, generation: u64) -> Result<PathBuf, StoreError> {
        let bytes = self.writer.into_inner().map_err(encode)?;
        let crc = crc32fast::hash(&bytes);
        let path = dir.join(segment_name(generation, crc));
        let tmp = dir.join(format!("{generation:020}.parquet.tmp"));
        let mut file = std::fs::File::create(&tmp).map_err(StoreError::io(&tmp))?;
        file.write_all(&bytes).map_err(StoreError::io(&tmp))?;
        file.sync_all().map_err(StoreError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(StoreError::io(&path))?;
        sync_dir(dir)?;
        Ok(path)
    }
}

/// Reads a segment after checking its bytes against the checksum in its name,
/// decoding one batch at a time.
pub fn read_segment(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, StoreError>>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let (_, crc) = parse_name(name).ok_or_else(|| corrupt("not a segment file name".into()))?;
    let bytes = std::fs::read(path).map_err(StoreError::io(path))?;
    let actual = crc32fast::hash(&bytes);
    if actual != crc {
        return Err(corrupt(format!(
            "checksum mismatch (name says {crc:08x}, bytes hash to {actual:08x})"
        )));
    }
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .and_then(|b| b.with_batch_size(1 << 16).build())
        .map_err(|e| corrupt(e.to_string()))?;
    let path = path.to_owned();
    Ok(reader.map(move |batch| {
        batch.map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })
    }))
}
