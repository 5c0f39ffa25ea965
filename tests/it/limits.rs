//! Resource limits against a real process: 10,000 concurrent connections.

use crate::util::*;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::net::TcpStream;

/// Raises this process's open-file limit (the daemon, a child, inherits it) to at
/// least `want`; Err says why it cannot.
fn raise_nofile(want: u64) -> Result<u64, String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    if soft >= want {
        return Ok(soft);
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, hard.max(want)).map_err(|e| {
        format!("cannot raise RLIMIT_NOFILE from {soft} (hard {hard}) to {want}: {e}")
    })?;
    Ok(want)
}

#[test]
fn ten_thousand_connections_are_held_the_next_is_refused_and_acks_keep_flowing() {
    let idle = 10_000usize;
    // Each process (this one, the daemon) holds one end of every connection, plus
    // headroom for the other tests of this binary.
    if let Err(reason) = raise_nofile(idle as u64 + 2_048) {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    // One active client plus the idle ones fill max_connections exactly.
    let d = TestDaemon::start(&plain_config(&format!("max_connections = {}", idle + 1)));
    let (addr, api) = (d.addr(0), d.api_addr());
    let healthy = HealthyClient::start(addr, "active");
    healthy.wait_more(1);
    let rss_before = d.rss_kib().expect("running");
    let mut held: Vec<TcpStream> = Vec::with_capacity(idle);
    for i in 0..idle {
        match TcpStream::connect(addr) {
            Ok(s) => held.push(s),
            Err(e) => panic!("connection {i} of {idle}: {e}"),
        }
    }
    wait_for("every connection accepted", || {
        (metric_sum(api, "tidepool_input_connections_open") as usize > idle).then_some(())
    });
    // One more than the limit: accepted by the kernel, then closed by the daemon with
    // a logged reason, without disturbing anyone.
    let mut extra = connect(addr);
    assert!(
        read_to_eof(&mut extra).is_empty(),
        "nothing is written to a refused client"
    );
    d.wait_log("max_connections (10001) reached");
    healthy.wait_more(20);
    let rss_after = d.rss_kib().expect("running");
    println!(
        "RELIABILITY connections: held={} refused_extra=1 daemon RSS {rss_before} -> {rss_after} KiB ({} bytes per connection)",
        idle + 1,
        (rss_after.saturating_sub(rss_before) * 1024) / idle as u64
    );
    assert!(
        rss_after < rss_before + 512 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB for {idle} idle connections"
    );
    assert_eq!(
        metric_sum(api, "tidepool_input_connections_refused_total"),
        1
    );
    // Closing them frees the slots: a new client is accepted again.
    drop(held);
    wait_for("the idle connections closed", || {
        (metric_sum(api, "tidepool_input_connections_open") <= 2).then_some(())
    });
    healthy.stop();
    assert_serves(addr, "after.limit");
}
