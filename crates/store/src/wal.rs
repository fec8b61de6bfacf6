//! The write-ahead log's file format.
//!
//! A file starts with an 8-byte magic; then frames of
//! `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`.
//! Reading stops at the first frame that is cut short or fails its checksum:
//! everything from there on is a torn tail.

use crate::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"PMWAL002";
/// The first format, whose every frame is a batch of writes (no kind byte).
const MAGIC_V1: &[u8; 8] = b"PMWAL001";
const HEADER: usize = 8;
/// Frames larger than this are taken as garbage (a torn length field).
const MAX_FRAME: usize = 1 << 30;

/// An open log file being appended to.
pub struct FrameLog {
    path: PathBuf,
    file: File,
    len: u64,
}

impl FrameLog {
    /// Creates a new, empty log file (its directory entry fsynced).
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
            .map_err(StoreError::io(path))?;
        file.write_all(MAGIC).map_err(StoreError::io(path))?;
        file.sync_all().map_err(StoreError::io(path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            len: MAGIC.len() as u64,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }

    /// Appends the frames already laid out in `frames` and fsyncs them.
    pub fn append_synced(&mut self, frames: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(frames)
            .map_err(StoreError::io(&self.path))?;
        self.file.sync_data().map_err(StoreError::io(&self.path))?;
        self.len += frames.len() as u64;
        Ok(())
    }
}

/// Lays out one frame for `payload` at the end of `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What reading a log file found.
pub struct Frames {
    pub payloads: Vec<Vec<u8>>,
    /// Length of the intact prefix; shorter than the file when a tail was torn.
    pub valid_len: u64,
    pub file_len: u64,
    /// Why reading stopped early, when it did.
    pub torn: Option<String>,
    /// Written in the first format: every payload is a batch of writes.
    pub v1: bool,
}

/// Reads every intact frame of a log file.
pub fn read_frames(path: &Path) -> Result<Frames, StoreError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(StoreError::io(path))?;
    let file_len = bytes.len() as u64;
    let header = bytes.get(..MAGIC.len());
    let v1 = header == Some(MAGIC_V1.as_slice());
    if header != Some(MAGIC.as_slice()) && !v1 {
        return Ok(Frames {
            payloads: Vec::new(),
            valid_len: 0,
            file_len,
            torn: Some("missing or damaged file header".into()),
            v1: false,
        });
    }
    let mut at = MAGIC.len();
    let mut payloads = Vec::new();
    let torn = loop {
        if at == bytes.len() {
            break None;
        }
        if bytes.len() - at < HEADER {
            break Some(format!("frame header cut short at byte {at}"));
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        if len > MAX_FRAME || bytes.len() - at - HEADER < len {
            break Some(format!(
                "frame at byte {at} cut short ({len} bytes announced)"
            ));
        }
        let payload = &bytes[at + HEADER..at + HEADER + len];
        if crc32fast::hash(payload) != crc {
            break Some(format!("checksum mismatch in frame at byte {at}"));
        }
        payloads.push(payload.to_vec());
        at += HEADER + len;
    };
    Ok(Frames {
        payloads,
        valid_len: at as u64,
        file_len,
        torn,
        v1,
    })
}

/// Cuts a log file back to its intact prefix so later readers never see the
/// torn bytes.
pub fn truncate(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(StoreError::io(path))?;
    file.set_len(len).map_err(StoreError::io(path))?;
    file.sync_all().map_err(StoreError::io(path))
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(payloads: &[&[u8]]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.wal");
        let mut log = FrameLog::create(&path).unwrap();
        let mut buf = Vec::new();
        for p in payloads {
            frame(p, &mut buf);
        }
        log.append_synced(&buf).unwrap();
        (dir, path)
    }

    #[test]
    fn frames_round_trip() {
        let (_d, path) = log_with(&[b"one", b"", b"three"]);
        let f = read_frames(&path).unwrap();
        assert_eq!(f.payloads, [b"one".to_vec(), vec![], b"three".to_vec()]);
        assert!(f.torn.is_none());
        assert_eq!(f.valid_len, f.file_len);
    }

    #[test]
    fn every_truncation_point_yields_a_prefix_of_whole_frames() {
        let (_d, path) = log_with(&[b"alpha", b"beta", b"gamma"]);
        let full = std::fs::read(&path).unwrap();
        for cut in 0..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let f = read_frames(&path).unwrap();
            let want: Vec<&[u8]> = [b"alpha".as_slice(), b"beta", b"gamma"]
                .into_iter()
                .take(f.payloads.len())
                .collect();
            assert_eq!(f.payloads, want, "cut at {cut}");
            assert!(f.valid_len <= cut as u64);
        }
    }

    #[test]
    fn a_flipped_byte_ends_the_log_at_that_frame() {
        let (_d, path) = log_with(&[b"alpha", b"beta", b"gamma"]);
        let mut bytes = std::fs::read(&path).unwrap();
        // Inside "beta"'s payload: 8 magic + (8 + 5) alpha + 8 header.
        bytes[8 + 13 + 8 + 1] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let f = read_frames(&path).unwrap();
        assert_eq!(f.payloads, [b"alpha".to_vec()]);
        assert!(f.torn.unwrap().contains("checksum mismatch"));
    }
}
