//! Cutting HTTP/1.1 responses off the front of a read buffer for `load http`: the
//! status, whether the server will close, and the start of the body for error reports.
//! Only what a keep-alive client needs: `Content-Length` bodies (what tidepool and most
//! servers send for small answers), or a body up to the close when there is none;
//! chunked bodies are refused with a message saying so. Everything is bounded, nothing
//! is allocated from a length the server declared.

use bytes::{Buf, BytesMut};

/// A response head may not be longer than this.
const MAX_HEAD: usize = 64 << 10;

/// A response body may not be longer than this (answers here are a few bytes).
const MAX_BODY: usize = 1 << 20;

/// One complete response.
#[derive(Debug, PartialEq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The server closes the connection after this response (`Connection: close`,
    /// HTTP/1.0 without keep-alive, or a body that runs to the close).
    pub close: bool,
    /// The first bytes of the body, for error reports.
    pub body: String,
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Takes the first complete response from `buf`: `Ok(None)` means read more (at EOF
/// pass `eof = true` so a body that runs to the close completes). Interim `1xx`
/// responses are skipped. The error names what is wrong with the bytes.
pub fn take_reply(buf: &mut BytesMut, eof: bool) -> Result<Option<Reply>, String> {
    loop {
        let Some(head_len) = find_head_end(buf) else {
            if buf.len() > MAX_HEAD {
                return Err(format!(
                    "no end of a response head within {} bytes",
                    buf.len()
                ));
            }
            if eof && !buf.is_empty() {
                return Err(format!(
                    "the server closed the connection inside a response head ({} bytes)",
                    buf.len()
                ));
            }
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts
            .next()
            .filter(|c| c.len() == 3)
            .and_then(|c| c.parse::<u16>().ok());
        let (Some(status), true) = (status, version.starts_with("HTTP/1.")) else {
            return Err(format!(
                "not an HTTP/1.x status line: {:?}",
                status_line.chars().take(80).collect::<String>()
            ));
        };
        let mut close = version == "HTTP/1.0";
        let mut length: Option<usize> = None;
        for line in lines.filter(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("response header line without a colon: {line:?}"));
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                let n = value
                    .parse::<usize>()
                    .map_err(|_| format!("Content-Length {value:?} is not a number"))?;
                if length.is_some_and(|l| l != n) {
                    return Err("two different Content-Length headers".to_string());
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(format!(
                    "Transfer-Encoding {value:?} is not supported by the load tool (it reads Content-Length bodies)"
                ));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        close = false;
                    }
                }
            }
        }
        if (100..200).contains(&status) {
            buf.advance(head_len);
            continue;
        }
        let no_body = status == 204 || status == 304;
        let body_len = match (length, no_body) {
            (_, true) => 0,
            (Some(n), false) if n <= MAX_BODY => n,
            (Some(n), false) => {
                return Err(format!(
                    "Content-Length {n} is over the load tool's {MAX_BODY} byte limit"
                ));
            }
            (None, false) => {
                // The body runs to the close.
                close = true;
                if !eof {
                    if buf.len() - head_len > MAX_BODY {
                        return Err(format!(
                            "a response body without Content-Length is over {MAX_BODY} bytes"
                        ));
                    }
                    return Ok(None);
                }
                buf.len() - head_len
            }
        };
        let Some(total) = head_len.checked_add(body_len).filter(|&t| t <= buf.len()) else {
            if eof {
                return Err(format!(
                    "the server closed the connection inside a {body_len}-byte response body"
                ));
            }
            return Ok(None);
        };
        let reply = buf.split_to(total);
        let body = reply.get(head_len..).unwrap_or_default();
        let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Ok(Some(Reply {
            status,
            close,
            body,
        }));
    }
}
