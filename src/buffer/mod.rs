//! The durable chunk buffer between the router and each output.
//!
//! OWNER: buffer helper. STUB. Intended shape (the helper may refine it):
//! `OutputBuffer::open(name, &BufferConfig, dir, sink)` recovers chunk files;
//! `append(key, entries, records)` returns a `CommitTicket` once the bytes are written
//! (awaiting while the buffer is full under `overflow_action = "block"`);
//! `CommitTicket::wait()` resolves after the fsync that covers the append.
