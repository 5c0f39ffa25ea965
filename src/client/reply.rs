//! Reads the server's replies (HELO, PONG, acks) one MessagePack value at a time from a
//! stream where a reply may arrive split over several reads, or several in one read.

use anyhow::bail;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest reply accepted; real ones are under 300 bytes, so anything bigger means the
/// peer is not a forward server.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Deepest nesting accepted in a reply.
const MAX_REPLY_DEPTH: usize = 16;

/// Buffers bytes read from the server and cuts them into whole values.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
}

impl ReplyReader {
    /// Reads until one complete value is buffered and returns it; bytes after it stay
    /// buffered for the next call. Fails on EOF, on bytes that are not MessagePack and on
    /// replies above 64 KiB.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> anyhow::Result<rmpv::Value> {
        loop {
            if let Some(value) = self.take()? {
                return Ok(value);
            }
            if self.buf.len() >= MAX_REPLY_BYTES {
                bail!(
                    "server reply exceeds {MAX_REPLY_BYTES} bytes without completing a MessagePack value: is this a forward server?"
                );
            }
            let mut chunk = [0u8; 4096];
            let n = rd.read(&mut chunk).await?;
            if n == 0 {
                if self.buf.is_empty() {
                    bail!("server closed the connection before replying");
                }
                bail!(
                    "server closed the connection in the middle of a reply ({} bytes buffered)",
                    self.buf.len()
                );
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    /// The first buffered value, if complete.
    fn take(&mut self) -> anyhow::Result<Option<rmpv::Value>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let mut rest = self.buf.as_slice();
        match rmpv::decode::read_value_with_max_depth(&mut rest, MAX_REPLY_DEPTH) {
            Ok(value) => {
                let used = self.buf.len() - rest.len();
                self.buf.drain(..used);
                Ok(Some(value))
            }
            Err(e) if is_eof(&e) => Ok(None),
            Err(e) => bail!("server sent a reply that is not MessagePack: {e}"),
        }
    }
}

/// A reply shown in an error message, cut to 200 characters so a misbehaving peer
/// cannot flood the log.
pub(crate) fn brief(value: &rmpv::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", text.get(..cut).unwrap_or_default()),
        None => text,
    }
}

/// Whether a decode error only means "more bytes needed".
fn is_eof(e: &rmpv::decode::Error) -> bool {
    match e {
        rmpv::decode::Error::InvalidMarkerRead(io) | rmpv::decode::Error::InvalidDataRead(io) => {
            io.kind() == std::io::ErrorKind::UnexpectedEof
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reply_split_byte_by_byte_is_reassembled() {
        let ack = [0x81, 0xa3, b'a', b'c', b'k', 0xa2, b'i', b'd', 0xc0];
        let (mut tx, mut rx) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for b in ack {
                tx.write_all(&[b]).await.expect("write");
            }
        });
        let mut reader = ReplyReader::default();
        let v = reader.read(&mut rx).await.expect("ack");
        assert_eq!(v["ack"].as_str(), Some("id"));
        assert!(reader.read(&mut rx).await.expect("nil").is_nil());
        writer.await.expect("writer");
        let err = reader.read(&mut rx).await.expect_err("eof");
        assert!(err.to_string().contains("before replying"), "{err}");
    }

    #[test]
    fn long_replies_are_cut_in_messages() {
        let long = rmpv::Value::from("é".repeat(500));
        assert_eq!(brief(&long).chars().count(), 203);
        assert_eq!(brief(&rmpv::Value::from(1)), "1");
    }

    #[tokio::test]
    async fn eof_mid_reply_is_an_error() {
        let mut input: &[u8] = &[0x81, 0xa3, b'a'];
        let err = ReplyReader::default()
            .read(&mut input)
            .await
            .expect_err("eof");
        assert!(err.to_string().contains("middle of a reply"), "{err}");
    }
}
