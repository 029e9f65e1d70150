//! Open connections, by client network: slots per network (an IPv4 address, or an IPv6
//! `/64`, which one host owns whole) and eviction of idle keep-alive connections when slots
//! run out, so that a new client always gets in while others merely hold connections open.
//!
//! A connection is idle when no request is in flight on it: none being handled, no response
//! body being produced, no write waiting for the client to read. An idle connection asked
//! to go ([`Registry::evict_for`]) sees the end of its input (the listener's transport reads
//! [`Connection::evicted`]): the HTTP layer closes it as if the client had, and its slots
//! are free. A connection with a request in flight is never evicted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

/// The network a client address belongs to for the per-network limit: an IPv4 address
/// (or an IPv4-mapped IPv6 one) as itself, an IPv6 address as its `/64`.
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// What a connection shares with the registry.
#[derive(Debug)]
pub struct Connection {
    network: IpAddr,
    /// Requests in flight (handled, or their response body still being sent).
    in_flight: AtomicUsize,
    /// When the connection last became idle.
    idle_since: Mutex<Instant>,
    /// Set while a write waits for the client to read (a response still going out).
    write_blocked: AtomicBool,
    /// Set when the connection is asked to go.
    evicted: AtomicBool,
    /// The reader to wake when it is.
    reader: Mutex<Option<Waker>>,
}

impl Connection {
    fn new(network: IpAddr) -> Self {
        Self {
            network,
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            write_blocked: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            reader: Mutex::new(None),
        }
    }

    /// Marks a request in flight until the guard is dropped (after its response body).
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// How long the connection has been idle, if it is.
    fn idle_for(&self, now: Instant) -> Option<std::time::Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0
            || self.write_blocked.load(Ordering::SeqCst)
            || self.evicted.load(Ordering::SeqCst)
        {
            return None;
        }
        let since = *lock(&self.idle_since);
        Some(now.saturating_duration_since(since))
    }

    /// Whether the connection was asked to go; if not, `waker` is woken when it is (the
    /// reader of a connection waiting for input registers here).
    pub fn evicted(&self, waker: &Waker) -> bool {
        if self.evicted.load(Ordering::SeqCst) {
            return true;
        }
        *lock(&self.reader) = Some(waker.clone());
        // asked between the check and the registration
        self.evicted.load(Ordering::SeqCst)
    }

    /// Notes whether a write is waiting for the client to read (the connection is then
    /// busy, whatever its requests).
    pub fn set_write_blocked(&self, blocked: bool) {
        self.write_blocked.store(blocked, Ordering::SeqCst);
    }

    /// Asks the connection to go: its reader sees the end of its input.
    fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        if let Some(w) = lock(&self.reader).take() {
            w.wake();
        }
    }
}

/// A poisoned lock still guards plain data here (counters, wakers): use it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request in flight on a connection; dropping it may make the connection idle.
#[derive(Debug)]
pub struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *lock(&self.0.idle_since) = Instant::now();
        }
    }
}

/// The open connections of a server.
#[derive(Clone, Debug)]
pub struct Registry {
    per_network: usize,
    open: Arc<Mutex<HashMap<IpAddr, Vec<Arc<Connection>>>>>,
}

/// One open connection's place in the registry; dropping it (the connection closed) frees
/// the place.
#[derive(Debug)]
pub struct Slot {
    connection: Arc<Connection>,
    open: Arc<Mutex<HashMap<IpAddr, Vec<Arc<Connection>>>>>,
}

impl Slot {
    /// The connection's shared state.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        let network = self.connection.network;
        if let Some(list) = open.get_mut(&network) {
            list.retain(|c| !Arc::ptr_eq(c, &self.connection));
            if list.is_empty() {
                open.remove(&network);
            }
        }
    }
}

impl Registry {
    /// A registry allowing `per_network` connections per client network.
    pub fn new(per_network: usize) -> Self {
        Self {
            per_network: per_network.max(1),
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A place for one more connection from `ip`'s network, if it has fewer than its limit
    /// open.
    pub fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let network = network_of(ip);
        let mut open = lock(&self.open);
        let list = open.entry(network).or_default();
        if list.len() >= self.per_network {
            return None;
        }
        let connection = Arc::new(Connection::new(network));
        list.push(connection.clone());
        Some(Slot {
            connection,
            open: self.open.clone(),
        })
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        lock(&self.open).values().map(Vec::len).sum()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for a connection from `ip`: evicts the longest-idle connection of its
    /// network when that network is at its limit, or else (`server_full`) of the network
    /// holding the most connections. Returns whether one was asked to go.
    pub fn evict_for(&self, ip: IpAddr, server_full: bool) -> bool {
        let network = network_of(ip);
        let open = lock(&self.open);
        let own_full = open
            .get(&network)
            .is_some_and(|l| l.len() >= self.per_network);
        let candidates: Vec<&Arc<Connection>> = if own_full {
            open.get(&network)
                .map(|l| l.iter().collect())
                .unwrap_or_default()
        } else if server_full {
            // the networks holding the most connections first
            let most = open.values().map(Vec::len).max().unwrap_or(0);
            open.values()
                .filter(|l| l.len() == most)
                .flat_map(|l| l.iter())
                .collect()
        } else {
            return false;
        };
        let now = Instant::now();
        let victim = candidates
            .into_iter()
            .filter_map(|c| c.idle_for(now).map(|idle| (idle, c)))
            .max_by_key(|(idle, _)| *idle);
        match victim {
            Some((_, c)) => {
                c.evict();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_one_network_and_ipv4_addresses_are_each_their_own() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(c));
        let v4: IpAddr = [10, 0, 0, 1].into();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(network_of(mapped), v4);
        assert_ne!(network_of([10, 0, 0, 2].into()), v4);
    }

    #[test]
    fn each_network_gets_its_limit_and_closing_frees_a_place() {
        let r = Registry::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = r.admit(a);
        let second = r.admit(a);
        assert!(first.is_some() && second.is_some());
        assert!(r.admit(a).is_none(), "a third from the same address");
        assert!(r.admit(b).is_some(), "another address is not affected");
        drop(first);
        assert!(r.admit(a).is_some(), "a closed connection frees its place");
        // one host's whole /64 shares one limit
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let x = r.admit(v6("2001:db8::1"));
        let y = r.admit(v6("2001:db8::2"));
        assert!(x.is_some() && y.is_some());
        assert!(r.admit(v6("2001:db8::3")).is_none());
    }

    #[test]
    fn the_longest_idle_connection_goes_never_one_in_flight() {
        let r = Registry::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let (old, busy) = (r.admit(a).unwrap(), r.admit(a).unwrap());
        let _request = busy.connection().request();
        std::thread::sleep(std::time::Duration::from_millis(5));
        // its own network is full: the idle one goes, not the busy one
        assert!(r.evict_for(a, false));
        assert!(old.connection().evicted.load(Ordering::SeqCst));
        assert!(!busy.connection().evicted.load(Ordering::SeqCst));
        // nothing idle is left to evict for it
        assert!(!r.evict_for(a, false));
        // another network, server not full: nothing to do
        assert!(!r.evict_for(b, false));
    }
}
