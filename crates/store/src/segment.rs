//! Immutable Parquet segments. A segment holds one scope's records of one
//! UTC day from one log generation. Its file name carries all of that and
//! the CRC-32 of its bytes:
//!
//! ```text
//! <generation>-<crc32>-<scope>-<day>-<segments in the generation>.parquet
//! ```
//!
//! so a damaged segment is caught before a single row is read from it, a
//! project's or a day's files are found without opening any, and a
//! generation whose compaction was cut short (fewer files than its names
//! say) is recognised. Each file is published by one atomic rename. Names of
//! the first format, `<generation>-<crc32>.parquet`, hold every scope and
//! day of their generation.

use crate::place::Place;
use crate::StoreError;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a segment's file name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentName {
    pub generation: u64,
    pub crc: u32,
    /// Scope hash and day; `None` for a first-format segment (every scope).
    pub place: Option<(u64, i32)>,
    /// How many segments its generation was compacted into.
    pub count: u32,
}

impl SegmentName {
    pub fn file_name(&self) -> String {
        match self.place {
            Some((scope, day)) => format!(
                "{:020}-{:08x}-{scope:016x}-{day}-{}.parquet",
                self.generation, self.crc, self.count
            ),
            None => format!("{:020}-{:08x}.parquet", self.generation, self.crc),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".parquet")?;
        let parts: Vec<&str> = stem.split('-').collect();
        let generation = parts.first()?.parse().ok()?;
        let crc = u32::from_str_radix(parts.get(1)?, 16).ok()?;
        match parts.len() {
            2 => Some(Self {
                generation,
                crc,
                place: None,
                count: 1,
            }),
            5 => Some(Self {
                generation,
                crc,
                place: Some((
                    u64::from_str_radix(parts[2], 16).ok()?,
                    parts[3].parse().ok()?,
                )),
                count: parts[4].parse().ok()?,
            }),
            _ => None,
        }
    }
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
    /// A segment for the records of `place`'s scope and day.
    pub fn new(schema: SchemaRef, place: &Place<'_>) -> Result<Self, StoreError> {
        let props = WriterProperties::builder()
            // zstd: ids are random hex, which only an entropy coder shrinks
            // (to about half; Snappy keeps them whole).
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("a valid level"),
            ))
            .set_created_by("polymeter".into())
            .set_key_value_metadata(Some(vec![
                KeyValue::new("polymeter.tenant".into(), place.tenant.to_owned()),
                KeyValue::new("polymeter.project".into(), place.project.to_owned()),
                KeyValue::new("polymeter.day".into(), place.day.to_string()),
            ]))
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

    /// Publishes the segment in `dir` as one of `count` of `generation`'s,
    /// for the scope and day of `place` (`(scope hash, day)`): written to a
    /// temporary file, fsynced, renamed. The caller fsyncs the directory once
    /// the generation's segments are all published. Returns its path.
    pub(crate) fn finish(
        self,
        dir: &Path,
        generation: u64,
        place: (u64, i32),
        count: u32,
    ) -> Result<PathBuf, StoreError> {
        let bytes = self.writer.into_inner().map_err(encode)?;
        let name = SegmentName {
            generation,
            crc: crc32fast::hash(&bytes),
            place: Some(place),
            count,
        };
        let path = dir.join(name.file_name());
        let tmp = dir.join(format!(
            "{generation:020}-{:016x}-{}.parquet.tmp",
            place.0, place.1
        ));
        let mut file = std::fs::File::create(&tmp).map_err(StoreError::io(&tmp))?;
        file.write_all(&bytes).map_err(StoreError::io(&tmp))?;
        file.sync_all().map_err(StoreError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(StoreError::io(&path))?;
        Ok(path)
    }
}

/// A segment's bytes, after checking them against the checksum in its name.
fn checked_bytes(path: &Path) -> Result<Vec<u8>, StoreError> {
    let crc = named_crc(path)?;
    let bytes = std::fs::read(path).map_err(StoreError::io(path))?;
    check_crc(path, crc, crc32fast::hash(&bytes))?;
    Ok(bytes)
}

/// Checks a segment's bytes against the checksum in its name without
/// decoding it or holding it in memory (a segment a snapshot stands for is
/// not read, but a damaged one is still found at start).
pub fn verify_segment(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let crc = named_crc(path)?;
    let mut file = std::fs::File::open(path).map_err(StoreError::io(path))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(StoreError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    check_crc(path, crc, hasher.finalize())
}

/// The CRC-32 a segment's file name says its bytes have.
fn named_crc(path: &Path) -> Result<u32, StoreError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    SegmentName::parse(name)
        .map(|n| n.crc)
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_owned(),
            reason: "not a segment file name".into(),
        })
}

fn check_crc(path: &Path, named: u32, actual: u32) -> Result<(), StoreError> {
    if actual != named {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!(
                "checksum mismatch (name says {named:08x}, bytes hash to {actual:08x})"
            ),
        });
    }
    Ok(())
}

/// Reads a segment after checking its bytes against the checksum in its name,
/// decoding one batch at a time.
pub fn read_segment(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, StoreError>>, StoreError> {
    read_segment_columns(path, None)
}

/// [`read_segment`], decoding only the named top-level `columns` when given.
pub fn read_segment_columns(
    path: &Path,
    columns: Option<&[&str]>,
) -> Result<impl Iterator<Item = Result<RecordBatch, StoreError>>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let bytes = checked_bytes(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map(|b| match columns {
            None => b,
            Some(names) => {
                let roots: Vec<usize> = b
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| names.contains(&f.name().as_str()))
                    .map(|(i, _)| i)
                    .collect();
                let mask = ProjectionMask::roots(b.parquet_schema(), roots);
                b.with_projection(mask)
            }
        })
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
