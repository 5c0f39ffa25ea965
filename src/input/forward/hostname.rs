//! Reverse DNS for `source_hostname_key`, as Fluentd's in_forward does with
//! `resolve_hostname`: cached, bounded, and never slower than a short deadline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is reused.
const TTL: Duration = Duration::from_secs(300);
/// Most addresses remembered; the cache is cleared when full.
const CAPACITY: usize = 4096;
/// A lookup slower than this gives the IP address instead.
const DEADLINE: Duration = Duration::from_secs(2);

/// Remembers reverse-DNS answers per IP address.
#[derive(Debug, Default)]
pub struct HostnameCache {
    entries: Mutex<HashMap<IpAddr, (String, Instant)>>,
}

impl HostnameCache {
    /// The peer's host name, or its address as text when it has none or the lookup
    /// fails or takes too long (so the key is always present).
    pub async fn resolve(&self, ip: IpAddr) -> String {
        if let Ok(map) = self.entries.lock()
            && let Some((name, at)) = map.get(&ip)
            && at.elapsed() < TTL
        {
            return name.clone();
        }
        let lookup = tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&ip));
        let name = match tokio::time::timeout(DEADLINE, lookup).await {
            Ok(Ok(Ok(name))) if !name.is_empty() => name,
            _ => ip.to_string(),
        };
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(ip, (name.clone(), Instant::now()));
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_resolves_to_a_name_and_is_cached() {
        let cache = HostnameCache::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let first = cache.resolve(ip).await;
        assert!(!first.is_empty());
        assert_eq!(
            cache.resolve(ip).await,
            first,
            "second answer from the cache"
        );
        assert_eq!(cache.entries.lock().map(|m| m.len()).unwrap_or(0), 1);
    }
}
