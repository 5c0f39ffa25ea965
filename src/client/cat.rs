//! `tidepool cat`: fluent-cat's job, JSON lines in, acknowledged Forward frames out.

use super::{ClientOptions, Event, ForwardClient, Mode};
use anyhow::{Context, bail};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What `cat` sends and where.
#[derive(Clone, Debug)]
pub struct CatOptions {
    /// Connection settings.
    pub client: ClientOptions,
    /// Tag of every event.
    pub tag: String,
    /// Most events per frame; lines already buffered are batched up to this.
    pub max_batch_events: usize,
    /// Most input bytes per frame, so a batch stays far below the server's
    /// `max_message_size`.
    pub max_batch_bytes: usize,
}

impl CatOptions {
    /// Defaults: batches of up to 1000 events or 4 MiB of input.
    pub fn new(client: ClientOptions, tag: impl Into<String>) -> Self {
        CatOptions {
            client,
            tag: tag.into(),
            max_batch_events: 1000,
            max_batch_bytes: 4 << 20,
        }
    }
}

/// What `cat` delivered; every counted event was acknowledged by the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatSummary {
    /// Input lines read (blank ones included).
    pub lines: u64,
    /// Events sent and acknowledged.
    pub events: u64,
    /// Frames sent.
    pub frames: u64,
}

/// Reads JSON lines from `input` (each an object, or an array of objects), stamps each
/// event with the current time and sends them as Forward-mode frames with a `chunk`,
/// waiting for every ack before sending the next frame. Lines that are already buffered
/// go into one frame; a slow producer gets one frame per line. A line that is not JSON,
/// or not an object / array of objects, stops with an error naming its line number
/// (earlier frames stay delivered).
pub async fn cat(
    opts: CatOptions,
    mut input: impl AsyncBufRead + Unpin,
) -> anyhow::Result<CatSummary> {
    let mut client = ForwardClient::connect(&opts.client).await?;
    let mut summary = CatSummary::default();
    let mut line = Vec::new();
    let mut eof = false;
    while !eof {
        let mut events = Vec::new();
        let mut bytes = 0usize;
        loop {
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .await
                .context("reading input")?;
            if n == 0 {
                eof = true;
                break;
            }
            summary.lines += 1;
            bytes = bytes.saturating_add(n);
            parse_line(&line, summary.lines, &mut events)?;
            if events.len() >= opts.max_batch_events
                || bytes >= opts.max_batch_bytes
                || !line_buffered(&mut input)
            {
                break;
            }
        }
        if events.is_empty() {
            continue;
        }
        client
            .send(Mode::Forward, &opts.tag, &events, true)
            .await
            .with_context(|| {
                format!(
                    "sending {} events ending at input line {}",
                    events.len(),
                    summary.lines
                )
            })?;
        summary.frames += 1;
        summary.events += events.len() as u64;
    }
    client.shutdown().await?;
    Ok(summary)
}

/// Whether a whole line is already buffered, checked without waiting: one poll with a
/// no-op waker (a later real `.await` registers the real waker).
fn line_buffered<R: AsyncBufRead + Unpin>(input: &mut R) -> bool {
    let mut cx = TaskContext::from_waker(Waker::noop());
    match Pin::new(input).poll_fill_buf(&mut cx) {
        Poll::Ready(Ok(buf)) => buf.contains(&b'\n'),
        _ => false,
    }
}

/// Appends the events of one input line (1-based `number`, for errors).
fn parse_line(line: &[u8], number: u64, events: &mut Vec<Event>) -> anyhow::Result<()> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let json: serde_json::Value = serde_json::from_slice(line)
        .with_context(|| format!("input line {number} is not valid JSON"))?;
    match json {
        serde_json::Value::Object(_) => events.push(Event::now(json_to_msgpack(json))),
        serde_json::Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                if !item.is_object() {
                    bail!(
                        "input line {number}: array element {i} is {}, expected a JSON object",
                        kind(&item)
                    );
                }
                events.push(Event::now(json_to_msgpack(item)));
            }
        }
        other => bail!(
            "input line {number} is {}, expected a JSON object or an array of objects",
            kind(&other)
        ),
    }
    Ok(())
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// JSON to MessagePack as fluent-cat does it: integers stay integers (signed or
/// unsigned as they fit), other numbers become float64.
pub fn json_to_msgpack(v: serde_json::Value) -> rmpv::Value {
    match v {
        serde_json::Value::Null => rmpv::Value::Nil,
        serde_json::Value::Bool(b) => rmpv::Value::Boolean(b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => rmpv::Value::from(s),
        serde_json::Value::Array(a) => {
            rmpv::Value::Array(a.into_iter().map(json_to_msgpack).collect())
        }
        serde_json::Value::Object(o) => rmpv::Value::Map(
            o.into_iter()
                .map(|(k, v)| (rmpv::Value::from(k), json_to_msgpack(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_kind() {
        let v =
            json_to_msgpack(serde_json::json!({"i": -3, "u": 18446744073709551615u64, "f": 0.5}));
        assert_eq!(v["i"].as_i64(), Some(-3));
        assert_eq!(v["u"].as_u64(), Some(u64::MAX));
        assert_eq!(v["f"].as_f64(), Some(0.5));
        assert!(v["f"].is_f64());
    }

    #[test]
    fn lines_become_events_or_numbered_errors() {
        let mut events = Vec::new();
        parse_line(b"{\"a\":1}\n", 1, &mut events).expect("object");
        parse_line(b"[{\"a\":1},{\"b\":2}]\n", 2, &mut events).expect("array");
        parse_line(b"  \n", 3, &mut events).expect("blank");
        assert_eq!(events.len(), 3);
        let err = parse_line(b"{oops\n", 7, &mut events).expect_err("bad json");
        assert!(err.to_string().contains("line 7"), "{err}");
        let err = parse_line(b"42\n", 8, &mut events).expect_err("number");
        assert!(err.to_string().contains("line 8 is a number"), "{err}");
        let err = parse_line(b"[{},1]\n", 9, &mut events).expect_err("element");
        assert!(err.to_string().contains("element 1"), "{err}");
    }
}
