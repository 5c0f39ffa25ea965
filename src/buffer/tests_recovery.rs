//! Recovery and format tests: chunk files written by hand, damaged, then opened.

use super::chunk_file::{self, ChunkHeader, FileState, HeaderError};
use super::tests::{PATIENCE, chunk_ids, config, sink, until};
use super::*;
use crate::output::ChunkId;
use std::path::{Path, PathBuf};

/// Writes a chunk file the way the commit thread does; returns its path, its id and
/// the offset where each block starts.
fn write_chunk(dir: &Path, key: &str, blocks: &[(&[u8], u32)]) -> (PathBuf, ChunkId, Vec<usize>) {
    std::fs::create_dir_all(dir).unwrap();
    let header = ChunkHeader::new(key);
    let mut bytes = Vec::new();
    header.encode(&mut bytes);
    let mut starts = Vec::new();
    for (entries, records) in blocks {
        starts.push(bytes.len());
        bytes.extend_from_slice(&chunk_file::block_header(entries, *records));
        bytes.extend_from_slice(entries);
    }
    let path = chunk_file::chunk_path(dir, FileState::Staged, &header.id);
    std::fs::write(&path, &bytes).unwrap();
    (path, header.id, starts)
}

const BLOCKS: [(&[u8], u32); 3] = [
    (b"first-block", 1),
    (b"second-block", 2),
    (b"third-block", 3),
];

#[test]
fn header_round_trips_and_rejects_damage() {
    let h = ChunkHeader::new("td.db.table");
    let mut buf = Vec::new();
    h.encode(&mut buf);
    assert_eq!(buf.len(), h.encoded_len());
    assert_eq!(ChunkHeader::decode(&buf).unwrap(), (h.clone(), buf.len()));
    assert_eq!(
        ChunkHeader::decode(&buf[..10]),
        Err(HeaderError::Truncated(10))
    );
    let mut flipped = buf.clone();
    flipped[20] ^= 0x40;
    assert!(matches!(
        ChunkHeader::decode(&flipped),
        Err(HeaderError::Checksum { .. })
    ));
    let mut magic = buf.clone();
    magic[0] = b'X';
    assert!(matches!(
        ChunkHeader::decode(&magic),
        Err(HeaderError::BadMagic(_))
    ));
    let mut version = buf;
    version[4] = 9;
    assert_eq!(ChunkHeader::decode(&version), Err(HeaderError::Version(9)));
}

#[test]
fn parse_never_trusts_a_block_length() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, starts) = write_chunk(dir.path(), "k", &BLOCKS);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[starts[1]..starts[1] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let image = chunk_file::parse(&bytes).unwrap();
    assert_eq!(image.entries.len(), 1);
    assert_eq!(image.good_len, starts[1]);
    let tail = image.tail.unwrap();
    assert_eq!(tail.dropped, bytes.len() - starts[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_chunk_keeps_its_complete_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id, starts) = write_chunk(dir.path(), "k", &BLOCKS);
    let full = std::fs::metadata(&path).unwrap().len();
    let torn = full - 4;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(torn)
        .unwrap();
    let mut s = sink(false);
    let buf = OutputBuffer::open("out", &config(), dir.path(), s.sink.clone())
        .await
        .unwrap();
    let queued = chunk_file::chunk_path(dir.path(), FileState::Queued, &id);
    assert_eq!(std::fs::metadata(&queued).unwrap().len(), starts[2] as u64);
    assert!(!path.exists());
    s.open_gate();
    let chunk = s.recv().await;
    assert_eq!(chunk.id, id);
    assert_eq!(&chunk.entries[..], b"first-blocksecond-block");
    assert_eq!(chunk.records, 3);
    buf.shutdown(PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_flip_truncates_from_the_damaged_block() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id, starts) = write_chunk(dir.path(), "k", &BLOCKS);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[starts[1] + 12 + 3] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let mut s = sink(true);
    let buf = OutputBuffer::open("out", &config(), dir.path(), s.sink.clone())
        .await
        .unwrap();
    let chunk = s.recv().await;
    assert_eq!(chunk.id, id);
    assert_eq!(&chunk.entries[..], b"first-block");
    assert_eq!(chunk.records, 1);
    buf.shutdown(PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_header_goes_to_dead_letter_untouched() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("buffer").join("out");
    let (path, _, _) = write_chunk(&dir, "k", &BLOCKS);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (good, good_id, _) = write_chunk(&dir, "k", &BLOCKS[..1]);
    let mut s = sink(true);
    let buf = OutputBuffer::open("out", &config(), &dir, s.sink.clone())
        .await
        .unwrap();
    let chunk = s.recv().await;
    assert_eq!(chunk.id, good_id);
    assert!(!path.exists() && !good.exists());
    let name = path.file_name().unwrap();
    let moved = dead_letter::dead_letter_dir(&dir).join(name);
    assert_eq!(std::fs::read(&moved).unwrap(), bytes);
    let record = sidecar::read_record(&moved).unwrap();
    assert!(
        record.reason.contains("header checksum mismatch"),
        "{}",
        record.reason
    );
    let cmd = BufferCommand::DeadLetter(DeadLetterCommand::List { output: None });
    let listing = run_cli(data.path(), &cmd).unwrap();
    assert!(listing.contains("unreadable chunk header"), "{listing}");
    buf.shutdown(PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_many_chunks_drains_in_creation_order_per_worker() {
    let dir = tempfile::tempdir().unwrap();
    let n = 1500;
    let mut ids = Vec::new();
    for i in 0..n {
        let entries = format!("chunk-{i};");
        ids.push(write_chunk(dir.path(), "k", &[(entries.as_bytes(), 1)]).1);
    }
    let mut s = sink(true);
    let buf = OutputBuffer::open("out", &config(), dir.path(), s.sink.clone())
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(s.recv().await.id);
    }
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    until("all chunks flushed", || {
        buf.metrics().snapshot().flush_count == n as u64
    })
    .await;
    assert_eq!(buf.metrics().snapshot().queued_chunks, 0);
    assert!(chunk_ids(dir.path(), FileState::Queued).is_empty());
    buf.shutdown(PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_chunks_of_a_dropped_buffer_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let s = sink(true);
    let buf = OutputBuffer::open("out", &config(), dir.path(), s.sink.clone())
        .await
        .unwrap();
    for i in 0..3u8 {
        let t = buf
            .append("k", bytes::Bytes::from(vec![b'a' + i; 10]), 1)
            .await
            .unwrap();
        t.wait().await.unwrap();
    }
    let staged = chunk_ids(dir.path(), FileState::Staged);
    assert_eq!(staged.len(), 1);
    drop(buf);
    let mut s2 = sink(true);
    let buf = OutputBuffer::open("out", &config(), dir.path(), s2.sink.clone())
        .await
        .unwrap();
    let chunk = s2.recv().await;
    assert_eq!(chunk.id, staged[0]);
    assert_eq!(&chunk.entries[..], b"aaaaaaaaaabbbbbbbbbbcccccccccc");
    assert_eq!(chunk.records, 3);
    buf.shutdown(PATIENCE).await;
}

proptest::proptest! {
    /// Any bytes at all: parsing never panics, and whatever it keeps has good framing.
    #[test]
    fn parse_survives_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        if let Ok(image) = chunk_file::parse(&bytes) {
            proptest::prop_assert!(image.good_len <= bytes.len());
            for r in &image.entries {
                proptest::prop_assert!(r.end <= image.good_len);
            }
        }
    }

    /// A chunk cut anywhere, or with any one byte flipped, keeps exactly the blocks
    /// that precede the damage.
    #[test]
    fn damage_keeps_exactly_the_blocks_before_it(
        blocks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..40), 1..6),
        cut in proptest::num::usize::ANY,
        flip in proptest::num::usize::ANY,
        bit in 0u8..8,
    ) {
        let header = ChunkHeader::new("k");
        let mut bytes = Vec::new();
        header.encode(&mut bytes);
        let header_len = bytes.len();
        let mut ends = Vec::new();
        for b in &blocks {
            bytes.extend_from_slice(&chunk_file::block_header(b, 1));
            bytes.extend_from_slice(b);
            ends.push(bytes.len());
        }
        let whole = chunk_file::parse(&bytes).unwrap();
        proptest::prop_assert_eq!(whole.entries.len(), blocks.len());
        proptest::prop_assert!(whole.tail.is_none());

        let cut = header_len + cut % (bytes.len() - header_len + 1);
        let image = chunk_file::parse(&bytes[..cut]).unwrap();
        let intact = ends.iter().filter(|&&e| e <= cut).count();
        proptest::prop_assert_eq!(image.entries.len(), intact);
        proptest::prop_assert_eq!(image.records as usize, intact);

        let at = header_len + flip % (bytes.len() - header_len);
        let mut flipped = bytes.clone();
        flipped[at] ^= 1 << bit;
        let image = chunk_file::parse(&flipped).unwrap();
        let before = ends.iter().filter(|&&e| e <= at).count();
        proptest::prop_assert_eq!(image.entries.len(), before);
    }
}
