//! A mock Treasure Data API on a real socket (127.0.0.1, port 0), for tests.
//!
//! Public and always compiled (not `#[cfg(test)]`) so daemon-level tests in `tests/it/`
//! can point a child daemon's td output at it: `endpoint = api_endpoint = mock.url()`.
//! It costs no extra dependency (axum is the daemon's HTTP server too).
//!
//! It checks every request the way the reference describes it (sections 2 and 3):
//! method, path, id format, `Authorization`, `Content-Type`, `Content-Length` (no
//! chunked upload), `Date`, `User-Agent`, and the body: gzip of concatenated
//! MessagePack maps, each with exactly one `time` key holding an integer. A request
//! that breaks a rule is answered 400 and recorded in [`MockTd::violations`], which a
//! test asserts empty.
//!
//! Like the real service it keeps databases and tables (an import into a missing one
//! answers 404; creating an existing one 409) and stores each import once per unique
//! id: a repeat is answered 200 and counted in [`MockTd::duplicates`], never stored
//! again, so a test can assert exactly-once delivery. Faults are scripted per call
//! ([`MockTd::push_fault`]) or drawn at random from a seed
//! ([`MockTd::set_random_failures`]).
//!
//! From a daemon-level test (inside a tokio runtime):
//!
//! ```ignore
//! let mock = MockTd::start().await?;          // accepts MOCK_APIKEY
//! mock.set_random_failures(30, 7);            // 30 % 503s, half after storing
//! // config: type = "td", apikey = MOCK_APIKEY, endpoint = api_endpoint = mock.url()
//! // ... send events, wait for the flush ...
//! assert_eq!(mock.rows("test_database", "cpu_info").len(), sent);
//! assert!(mock.violations().is_empty());
//! ```

use crate::msgpack::head::{Cursor, Head};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use flate2::read::GzDecoder;
use md5::{Digest, Md5};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// The API key the mock accepts unless [`MockTd::start_with_key`] says otherwise.
pub const MOCK_APIKEY: &str = "1/mock0123456789abcdef";

/// Largest request body read, and largest inflated import body.
pub const MAX_BODY: usize = 256 << 20;

/// Which call a scripted fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `PUT /v3/table/import_with_id/...`.
    Import,
    /// `POST /v3/database/create/<db>`.
    CreateDatabase,
    /// `POST /v3/table/create/<db>/<table>/log`.
    CreateTable,
}

/// How the mock misbehaves for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status without doing anything.
    Status(u16),
    /// Do the call (store the import, create the database or table), then answer this
    /// status: an answer lost after the work was done, or another worker's race.
    AfterWork(u16),
    /// Store the import and answer 200 with an `md5_hex` that does not match.
    WrongMd5,
}

/// One stored import.
#[derive(Clone, Debug)]
pub struct Import {
    /// Database from the path.
    pub db: String,
    /// Table from the path.
    pub table: String,
    /// The unique id from the path.
    pub id: String,
    /// The decoded rows, in body order (empty after [`MockTd::set_keep_rows`]`(false)`).
    pub rows: Vec<rmpv::Value>,
    /// How many rows the body held.
    pub row_count: u64,
    /// Compressed body length.
    pub gz_len: usize,
    /// MD5 of the inflated rows: a repeat of the id must carry the same.
    pub rows_md5: String,
}

/// One request as received, with the status it got.
#[derive(Clone, Debug)]
pub struct Logged {
    /// `PUT` or `POST` (or whatever came).
    pub method: String,
    /// The path as sent.
    pub path: String,
    /// Headers, names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The answer's status.
    pub status: u16,
}

impl Logged {
    /// The value of header `name` (lowercase), if sent once or more (the first).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct State {
    apikey: String,
    databases: BTreeSet<String>,
    tables: BTreeSet<(String, String)>,
    imports: Vec<Import>,
    ids: HashMap<String, usize>,
    duplicates: u64,
    faults: HashMap<Call, VecDeque<Fault>>,
    /// (percent, xorshift state) of random import failures.
    random: Option<(u32, u64)>,
    requests: Vec<Logged>,
    violations: Vec<String>,
    connections: u64,
    /// Count rows instead of decoding and keeping them (load tests).
    count_only: bool,
}

/// A running mock; stops when dropped.
#[derive(Debug)]
pub struct MockTd {
    addr: SocketAddr,
    /// `http`, or `https` for [`MockTd::start_tls`].
    scheme: &'static str,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockTd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockTd {
    /// Starts a mock accepting [`MOCK_APIKEY`], with no database.
    pub async fn start() -> std::io::Result<MockTd> {
        Self::start_with_key(MOCK_APIKEY).await
    }

    /// Starts a mock that accepts only `apikey` (others get 401).
    pub async fn start_with_key(apikey: &str) -> std::io::Result<MockTd> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        Ok(Self::serve(listener, addr, "http", apikey))
    }

    /// Starts a mock speaking HTTPS with `tls` (e.g. a certificate for 127.0.0.1), to
    /// test certificate verification, `ca_file` and `tls_verify`.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> std::io::Result<MockTd> {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = tcp.local_addr()?;
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
        };
        Ok(Self::serve(listener, addr, "https", MOCK_APIKEY))
    }

    fn serve<L>(listener: L, addr: SocketAddr, scheme: &'static str, apikey: &str) -> MockTd
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let state = Arc::new(Mutex::new(State {
            apikey: apikey.to_string(),
            ..State::default()
        }));
        let counted = state.clone();
        let listener = axum::serve::ListenerExt::tap_io(listener, move |_io: &mut L::Io| {
            counted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .connections += 1;
        });
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let state = shared.clone();
            async move { handle(state, req).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockTd {
            addr,
            scheme,
            state,
            task,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://127.0.0.1:PORT` (`https` with TLS), for `endpoint` and `api_endpoint`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Changes the accepted key (an operator fixing a revoked key).
    pub fn set_apikey(&self, apikey: &str) {
        self.lock().apikey = apikey.to_string();
    }

    /// Creates a database as if an operator had.
    pub fn add_database(&self, db: &str) {
        self.lock().databases.insert(db.to_string());
    }

    /// Creates a database (if needed) and a table as if an operator had.
    pub fn add_table(&self, db: &str, table: &str) {
        let mut s = self.lock();
        s.databases.insert(db.to_string());
        s.tables.insert((db.to_string(), table.to_string()));
    }

    /// Queues a fault for the next call of that kind (faults are used in order).
    pub fn push_fault(&self, call: Call, fault: Fault) {
        self.lock().faults.entry(call).or_default().push_back(fault);
    }

    /// Makes `percent` % of imports fail with 503, drawn from `seed`: half before the
    /// import is stored, half after (a lost answer).
    pub fn set_random_failures(&self, percent: u32, seed: u64) {
        self.lock().random = Some((percent.min(100), seed | 1));
    }

    /// With `false`, rows are checked and counted but not decoded into values or kept,
    /// so a throughput test is not slowed down by the mock.
    pub fn set_keep_rows(&self, keep: bool) {
        self.lock().count_only = !keep;
    }

    /// How many rows were stored into `db.table` (also with rows not kept).
    pub fn row_count(&self, db: &str, table: &str) -> u64 {
        self.lock()
            .imports
            .iter()
            .filter(|i| i.db == db && i.table == table)
            .map(|i| i.row_count)
            .sum()
    }

    /// Every import stored, in arrival order (repeats of an id are not stored again).
    pub fn imports(&self) -> Vec<Import> {
        self.lock().imports.clone()
    }

    /// The import stored under `unique_id`, if any.
    pub fn import(&self, unique_id: &str) -> Option<Import> {
        let s = self.lock();
        s.ids
            .get(unique_id)
            .and_then(|&i| s.imports.get(i))
            .cloned()
    }

    /// Every row stored into `db.table`, in arrival order.
    pub fn rows(&self, db: &str, table: &str) -> Vec<rmpv::Value> {
        self.lock()
            .imports
            .iter()
            .filter(|i| i.db == db && i.table == table)
            .flat_map(|i| i.rows.iter().cloned())
            .collect()
    }

    /// Imports that repeated an already stored id (answered 200, not stored).
    pub fn duplicates(&self) -> u64 {
        self.lock().duplicates
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.lock().requests.clone()
    }

    /// Connections accepted so far: fewer than requests when the client reuses them.
    pub fn connections(&self) -> u64 {
        self.lock().connections
    }

    /// Broken rules found in requests; a correct client leaves this empty.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The databases that exist.
    pub fn databases(&self) -> Vec<String> {
        self.lock().databases.iter().cloned().collect()
    }

    /// The tables that exist, as `(db, table)`.
    pub fn tables(&self) -> Vec<(String, String)> {
        self.lock().tables.iter().cloned().collect()
    }
}

/// Accepts TCP connections and completes their TLS handshake; a failed handshake (a
/// client that does not trust the certificate) drops that connection only.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

/// A handshake slower than this is abandoned so one stuck client cannot stop the mock.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                tokio::task::yield_now().await;
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// The answer to one request; records the request and its status.
async fn handle(state: Arc<Mutex<State>>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let (status, answer) = match body {
        Ok(body) => route(
            &mut s,
            &parts.method,
            parts.uri.path(),
            &parts.headers,
            &body,
        ),
        Err(e) => violation(&mut s, format!("cannot read the request body: {e}")),
    };
    s.requests.push(Logged {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        status,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

type Answer = (u16, serde_json::Value);

fn error(status: u16, message: impl Into<String>) -> Answer {
    let message = message.into();
    (
        status,
        serde_json::json!({ "error": message, "message": message }),
    )
}

fn violation(s: &mut State, what: String) -> Answer {
    s.violations.push(what.clone());
    error(400, what)
}

fn route(s: &mut State, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("PUT", ["v3", "table", "import_with_id", db, table, id, "msgpack.gz"]) => {
            import(s, headers, body, db, table, id)
        }
        ("POST", ["v3", "database", "create", db]) => create(s, headers, body, db, None),
        ("POST", ["v3", "table", "create", db, table, "log"]) => {
            create(s, headers, body, db, Some(table))
        }
        _ => violation(s, format!("unexpected request {method} {path}")),
    }
}

/// The checks shared by every call: the key, the Date and User-Agent headers, and a
/// Content-Length that matches the body. Err carries the answer to give.
fn check_common(s: &mut State, headers: &HeaderMap, body: &[u8]) -> Result<(), Answer> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let auth = header("authorization");
    if auth != Some(format!("TD1 {}", s.apikey).as_str()) {
        // Echoes what it got, as a careless server might, so tests prove redaction.
        return Err(error(
            401,
            format!("Unauthorized: invalid apikey in {auth:?}"),
        ));
    }
    let mut problems = Vec::new();
    if headers.get_all("authorization").iter().count() != 1 {
        problems.push("authorization sent more than once".to_string());
    }
    match header("date") {
        Some(d) if is_rfc2822(d) => {}
        other => problems.push(format!(
            "date header {other:?} is not like \"Wed, 25 Nov 2026 12:49:44 +0000\""
        )),
    }
    match header("user-agent") {
        Some(ua) if ua.starts_with("tidepool/") => {}
        other => problems.push(format!(
            "user-agent {other:?} does not start with tidepool/"
        )),
    }
    if headers.contains_key("transfer-encoding") {
        problems.push("transfer-encoding sent: bodies must have a Content-Length".to_string());
    }
    match header("content-length").map(str::parse::<usize>) {
        Some(Ok(n)) if n == body.len() => {}
        other => problems.push(format!(
            "content-length {other:?} does not match the {} body bytes",
            body.len()
        )),
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(violation(s, problems.join("; "))),
    }
}

/// `Www, DD Mon YYYY HH:MM:SS +0000` (or another numeric zone, or `GMT`).
fn is_rfc2822(d: &str) -> bool {
    let parts: Vec<&str> = d.split(' ').collect();
    let [wd, day, mon, year, time, zone] = parts.as_slice() else {
        return false;
    };
    const DAYS: [&str; 7] = ["Mon,", "Tue,", "Wed,", "Thu,", "Fri,", "Sat,", "Sun,"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    let hms: Vec<&str> = time.split(':').collect();
    DAYS.contains(wd)
        && digits(day, 2)
        && MONTHS.contains(mon)
        && digits(year, 4)
        && hms.len() == 3
        && hms.iter().all(|p| digits(p, 2))
        && (*zone == "GMT"
            || (zone.len() == 5
                && (zone.starts_with('+') || zone.starts_with('-'))
                && zone.get(1..).is_some_and(|z| digits(z, 4))))
}

fn valid_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn next_fault(s: &mut State, call: Call) -> Option<Fault> {
    if let Some(f) = s.faults.get_mut(&call).and_then(VecDeque::pop_front) {
        return Some(f);
    }
    let (percent, rng) = s.random.as_mut().filter(|_| call == Call::Import)?;
    // xorshift64*: deterministic per seed, no dependency.
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    let draw = rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
    let roll = (draw % 200) as u32;
    if roll < *percent {
        Some(Fault::Status(503))
    } else if roll >= 100 && roll - 100 < *percent {
        Some(Fault::AfterWork(503))
    } else {
        None
    }
}

fn import(
    s: &mut State,
    headers: &HeaderMap,
    body: &[u8],
    db: &str,
    table: &str,
    id: &str,
) -> Answer {
    if let Err(answer) = check_common(s, headers, body) {
        return answer;
    }
    let mut problems = Vec::new();
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok());
    if ct != Some("application/octet-stream") {
        problems.push(format!(
            "content-type {ct:?} is not application/octet-stream"
        ));
    }
    if !valid_name(db) || !valid_name(table) {
        problems.push(format!("bad database or table name {db:?}/{table:?}"));
    }
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        problems.push(format!("unique id {id:?} is not 32 lowercase hex digits"));
    }
    let (rows, row_count, rows_md5) = match decode_body(body, !s.count_only) {
        Ok(decoded) => decoded,
        Err(e) => {
            problems.push(e);
            (Vec::new(), 0, String::new())
        }
    };
    if !problems.is_empty() {
        return violation(s, problems.join("; "));
    }
    let fault = next_fault(s, Call::Import);
    if let Some(Fault::Status(code)) = fault {
        return error(code, format!("injected {code}"));
    }
    if !s.databases.contains(db) {
        return error(404, format!("Couldn't find UserDatabase with name = {db}"));
    }
    if !s.tables.contains(&(db.to_string(), table.to_string())) {
        return error(404, format!("Table '{table}' does not exist"));
    }
    match s.ids.get(id).copied() {
        Some(i) => {
            s.duplicates += 1;
            let same = s
                .imports
                .get(i)
                .is_some_and(|prev| prev.rows_md5 == rows_md5);
            if !same {
                s.violations
                    .push(format!("unique id {id} reused for different rows"));
            }
        }
        None => {
            s.ids.insert(id.to_string(), s.imports.len());
            s.imports.push(Import {
                db: db.to_string(),
                table: table.to_string(),
                id: id.to_string(),
                rows,
                row_count,
                gz_len: body.len(),
                rows_md5,
            });
        }
    }
    let md5 = match fault {
        Some(Fault::WrongMd5) => "0".repeat(32),
        _ => hex::encode(Md5::digest(body)),
    };
    if let Some(Fault::AfterWork(code)) = fault {
        return error(code, format!("injected {code} after storing"));
    }
    (
        200,
        serde_json::json!({
            "database": db, "table": table, "elapsed_time": 0.001,
            "md5_hex": md5, "unique_id": id,
        }),
    )
}

/// Inflates and checks an import body: every row must be a map with exactly one
/// `time` key whose value is an integer. Returns the rows (decoded only with `keep`),
/// their count, and the MD5 of the inflated bytes.
fn decode_body(body: &[u8], keep: bool) -> Result<(Vec<rmpv::Value>, u64, String), String> {
    let mut raw = Vec::new();
    GzDecoder::new(body)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("body is not gzip: {e}"))?;
    if raw.len() > MAX_BODY {
        return Err(format!("inflated body is over {MAX_BODY} bytes"));
    }
    let count = check_rows(&raw)?;
    let mut rows = Vec::new();
    let mut rest = raw.as_slice();
    while keep && !rest.is_empty() {
        let row = rmpv::decode::read_value(&mut rest)
            .map_err(|e| format!("row {} is not MessagePack: {e}", rows.len()))?;
        rows.push(row);
    }
    Ok((rows, count, hex::encode(Md5::digest(&raw))))
}

/// Walks the rows without building values; the count of rows, or what is wrong.
fn check_rows(raw: &[u8]) -> Result<u64, String> {
    let mut cur = Cursor::new(raw);
    let mut n: u64 = 0;
    let bad = |n: u64, e: crate::msgpack::ScanError| format!("row {n} is not MessagePack: {e}");
    while !cur.is_empty() {
        let Head::Map(pairs) = cur.head().map_err(|e| bad(n, e))? else {
            return Err(format!("row {n} is not a map"));
        };
        let mut times = 0;
        for _ in 0..pairs {
            let mut key = cur;
            let is_time =
                matches!(key.head(), Ok(Head::Str(4))) && key.body(4).is_ok_and(|b| b == b"time");
            cur.skip().map_err(|e| bad(n, e))?;
            if is_time {
                times += 1;
                let mut value = cur;
                if !matches!(value.head(), Ok(Head::UInt(_) | Head::Int(_))) {
                    return Err(format!("row {n}: time is not an integer"));
                }
            }
            cur.skip().map_err(|e| bad(n, e))?;
        }
        if times != 1 {
            return Err(format!(
                "row {n} has {times} time keys, expected exactly one"
            ));
        }
        n += 1;
    }
    Ok(n)
}

fn create(
    s: &mut State,
    headers: &HeaderMap,
    body: &[u8],
    db: &str,
    table: Option<&str>,
) -> Answer {
    if let Err(answer) = check_common(s, headers, body) {
        return answer;
    }
    if !body.is_empty() {
        return violation(s, format!("create call with a {}-byte body", body.len()));
    }
    let names_ok = valid_name(db) && table.is_none_or(valid_name);
    if !names_ok {
        return error(
            400,
            format!("Name must be 3 to 256 characters: {db:?}/{table:?}"),
        );
    }
    let call = match table {
        Some(_) => Call::CreateTable,
        None => Call::CreateDatabase,
    };
    let fault = next_fault(s, call);
    if let Some(Fault::Status(code)) = fault {
        return error(code, format!("injected {code}"));
    }
    let existed = match table {
        None => !s.databases.insert(db.to_string()),
        Some(t) => {
            if !s.databases.contains(db) {
                return error(404, format!("Couldn't find UserDatabase with name = {db}"));
            }
            !s.tables.insert((db.to_string(), t.to_string()))
        }
    };
    if let Some(Fault::AfterWork(code)) = fault {
        return error(code, format!("injected {code} after creating"));
    }
    if existed {
        return error(409, format!("{db} already exists"));
    }
    match table {
        None => (200, serde_json::json!({ "database": db })),
        Some(t) => (
            200,
            serde_json::json!({ "database": db, "table": t, "type": "log" }),
        ),
    }
}
