//! Immutable Parquet segments. A segment's file name carries its generation
//! and the CRC-32 of its bytes (`<gen>-<crc>.parquet`), so a damaged segment is
//! caught before a single row is read from it, and the name is published by
//! one atomic rename.

use crate::wal::sync_dir;
use crate::StoreError;
use arrow::array::RecordBatch;
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

/// Writes `batch` as segment `generation` in `dir`; returns its path.
pub fn write_segment(
    dir: &Path,
    generation: u64,
    batch: &RecordBatch,
) -> Result<PathBuf, StoreError> {
    let mut bytes = Vec::new();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by("polymeter".into())
        .build();
    let encode = |e: parquet::errors::ParquetError| StoreError::Encode(e.to_string());
    let mut writer =
        ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).map_err(encode)?;
    writer.write(batch).map_err(encode)?;
    writer.close().map_err(encode)?;

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

/// Reads a segment after checking its bytes against the checksum in its name.
pub fn read_segment(path: &Path) -> Result<Vec<RecordBatch>, StoreError> {
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
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(e.to_string()))
}
