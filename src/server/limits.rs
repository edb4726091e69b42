//! Connection admission: a global cap and a per-client-address cap, both counted before they are
//! checked (increment, then compare, then give back on refusal), so a burst of simultaneous
//! connects can never get past either. Defaults come from the file-descriptor limit, which
//! [`raise_fd_limit`] lifts to the hard limit at start.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::ConnectionConfig;
use crate::policy::{TrustedProxies, subscriber_address};

/// Descriptors kept back from the connection cap: listeners, log, state store, directory
/// connections, files read at run time.
const RESERVED_FDS: usize = 64;
/// Used when the fd limit cannot be read.
const FALLBACK_FD_LIMIT: usize = 1024;
/// Default per-address cap is `max / PER_ADDRESS_SHARE`, clamped to this range.
const PER_ADDRESS_SHARE: usize = 8;
const PER_ADDRESS_DEFAULT_RANGE: (usize, usize) = (16, 256);
/// Default stall allowed on a write.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> usize {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => usize::try_from(soft).unwrap_or(usize::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the file-descriptor limit");
            current_fd_limit()
        }
    }
}

fn current_fd_limit() -> usize {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .and_then(|(soft, _)| usize::try_from(soft).ok())
        .unwrap_or(FALLBACK_FD_LIMIT)
}

/// The caps and timeout in force, resolved from `[server.connections]` and the fd limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max: usize,
    /// Most connections from one address (IPv6: one /64).
    pub max_per_address: usize,
    /// Longest a write may stall.
    pub write_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits for `config` under the current soft fd limit. A configured `max` above what
    /// the descriptors allow is lowered (with a warning): past it, accept would fail instead.
    pub fn resolve(config: &ConnectionConfig) -> Self {
        Self::for_fd_limit(config, current_fd_limit())
    }

    fn for_fd_limit(config: &ConnectionConfig, fd_limit: usize) -> Self {
        let ceiling = fd_limit.saturating_sub(RESERVED_FDS).max(1);
        let default_max = (ceiling / 4 * 3).max(1);
        let max = match config.max {
            Some(wanted) if wanted > ceiling => {
                tracing::warn!(
                    configured = wanted,
                    used = ceiling,
                    fd_limit,
                    "server.connections.max is above the file-descriptor limit: lowered"
                );
                ceiling
            }
            Some(wanted) => wanted,
            None => default_max,
        };
        let (low, high) = PER_ADDRESS_DEFAULT_RANGE;
        let max_per_address = config
            .max_per_address
            .unwrap_or((max / PER_ADDRESS_SHARE).clamp(low, high))
            .min(max);
        let write_timeout = config
            .write_timeout_secs
            .map_or(DEFAULT_WRITE_TIMEOUT, Duration::from_secs);
        Self {
            max,
            max_per_address,
            write_timeout,
        }
    }
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `server.connections.max` connections are open.
    Global,
    /// The client's address holds `server.connections.max_per_address` connections.
    PerAddress,
}

impl Refused {
    /// The value in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Global => "connection_cap",
            Refused::PerAddress => "per_address_connection_cap",
        }
    }
}

/// Counts open connections in total and per address.
#[derive(Debug)]
pub struct Admission {
    limits: ConnectionLimits,
    proxies: TrustedProxies,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    /// Admission under `limits`; `proxies` are exempt from the per-address cap.
    pub fn new(limits: ConnectionLimits, proxies: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            limits,
            proxies,
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a slot for a connection from `peer`; the slot is given back when the permit drops.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refused> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.limits.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Global);
        }
        let key = (!self.proxies.trusts(peer)).then(|| subscriber_address(peer));
        if let Some(key) = key {
            let mut counts = self.counts();
            let count = counts.entry(key).or_insert(0);
            *count += 1;
            if *count > self.limits.max_per_address {
                *count -= 1;
                drop(counts);
                self.release(None);
                return Err(Refused::PerAddress);
            }
        }
        Ok(Permit {
            admission: self.clone(),
            key,
        })
    }

    /// A poisoned lock still holds consistent counts (every update is one statement).
    fn counts(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn release(&self, key: Option<IpAddr>) {
        if let Some(key) = key {
            let mut counts = self.counts();
            if let Some(count) = counts.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&key);
                }
            }
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One admitted connection's slot.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    key: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.key);
    }
}

/// Lets one log line through per interval and counts the ones it held back, so a flood of
/// refusals or accept errors costs a line a second, not a line per event.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl LogThrottle {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(n)` when a line may be written now, `n` being the events held back since the last.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(max: usize, per: usize) -> ConnectionLimits {
        ConnectionLimits {
            max,
            max_per_address: per,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }

    #[test]
    fn defaults_follow_the_fd_limit() {
        let none = ConnectionConfig::default();
        let at_1024 = ConnectionLimits::for_fd_limit(&none, 1024);
        assert_eq!(at_1024.max, 720);
        assert_eq!(at_1024.max_per_address, 90);
        let big = ConnectionLimits::for_fd_limit(&none, 1 << 20);
        assert_eq!(big.max_per_address, 256);
        let too_many = ConnectionConfig {
            max: Some(5000),
            ..ConnectionConfig::default()
        };
        assert_eq!(ConnectionLimits::for_fd_limit(&too_many, 1024).max, 960);
    }

    #[test]
    fn caps_hold_and_slots_come_back() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let admission = Admission::new(limits(4, 2), proxies);
        let a1 = admission.admit(ip("192.0.2.1")).unwrap();
        let _a2 = admission.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            admission.admit(ip("192.0.2.1")).unwrap_err(),
            Refused::PerAddress
        );
        let _v6 = admission.admit(ip("2001:db8::1")).unwrap();
        let _v6b = admission.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).unwrap_err(),
            Refused::Global
        );
        drop(a1);
        let _proxy = admission.admit(ip("10.0.0.1")).unwrap();
        drop(_proxy);
        assert_eq!(
            admission.admit(ip("2001:db8::3")).unwrap_err(),
            Refused::PerAddress,
            "one /64 is one address"
        );
        let _proxy1 = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(admission.open.load(Ordering::Acquire), 4);
    }

    #[test]
    fn throttle_counts_what_it_holds_back() {
        let mut throttle = LogThrottle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(throttle.allow(start), Some(0));
        assert_eq!(throttle.allow(start), None);
        assert_eq!(throttle.allow(start + Duration::from_millis(10)), None);
        assert_eq!(throttle.allow(start + Duration::from_secs(2)), Some(2));
    }
}
