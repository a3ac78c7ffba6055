//! One index per NCP CA of the certificates recovery has read recently (serial → notBefore and key/SAN
//! fingerprints), shared by every recovering request, so that each certificate of a busy CA is read
//! from NCP once rather than once per request; and where each unfinished search left off.
//!
//! Bounded: at most [`MAX_INDEXED_CAS`] CAs (least recently used go first), [`MAX_ENTRIES_PER_CA`]
//! entries per CA (oldest read go first) and [`ENTRY_TTL`] per entry. A certificate never changes
//! once issued, so an entry is only ever stale in that the certificate may have been deleted from
//! NCP; a match is always read from NCP again before it is used.

use super::Order;
use super::sought::{Entry, Sought, Window};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many CAs the index remembers.
pub const MAX_INDEXED_CAS: usize = 64;
/// How many certificates it remembers per CA.
pub const MAX_ENTRIES_PER_CA: usize = 4096;
/// How long an entry (and an unfinished search's place) is kept.
pub const ENTRY_TTL: Duration = Duration::from_secs(600);
/// How many full list pages it remembers per CA.
pub const MAX_CACHED_PAGES: usize = 1024;
/// At most this many index matches are read from NCP before a search falls back to the list.
const MAX_CANDIDATES: usize = 4;

/// Where an unfinished search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    /// The window it searches.
    pub window: Window,
    /// The page to read next.
    pub page: u32,
    /// When the search started (wall clock, ms since the epoch).
    pub started_ms: i64,
    /// `totalCnt` when it started: a list that shrank since may have moved certificates between pages.
    pub total_cnt: i64,
}

#[derive(Debug)]
struct CaState {
    order: Option<Order>,
    pages_hint: Option<u32>,
    entries: HashMap<String, (Entry, Instant)>,
    cursors: HashMap<String, (Cursor, Instant)>,
    /// Full pages of an oldest-first list, which only change when certificates are removed: page →
    /// serials, read when the list held `total_cnt` certificates.
    pages: HashMap<u32, (Vec<String>, Instant)>,
    /// The largest `totalCnt` seen; a smaller one means certificates were removed.
    total_cnt: i64,
    /// A search of this CA is running.
    busy: bool,
    touched: Instant,
}

impl CaState {
    fn new(now: Instant) -> Self {
        Self {
            order: None,
            pages_hint: None,
            entries: HashMap::new(),
            cursors: HashMap::new(),
            pages: HashMap::new(),
            total_cnt: 0,
            busy: false,
            touched: now,
        }
    }
}

/// The shared index of recently read certificates, by CA (see the module docs).
#[derive(Debug, Default)]
pub struct RecoveryIndex {
    cas: Mutex<HashMap<String, CaState>>,
}

/// One search's claim on a CA (see [`RecoveryIndex::claim`]).
pub(super) struct Claim<'a> {
    index: &'a RecoveryIndex,
    ca: &'a str,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.index.with_ca(self.ca, |s, _| s.busy = false);
    }
}

/// Names a CA: its endpoint, the credentials' access key and its tag (two tenants' endpoints never
/// share entries).
#[must_use]
pub fn ca_key(base_url: &str, access_key: &str, ca_tag: &str) -> String {
    format!("{base_url}\u{0}{access_key}\u{0}{ca_tag}")
}

impl RecoveryIndex {
    fn with_ca<T>(&self, ca: &str, f: impl FnOnce(&mut CaState, Instant) -> T) -> T {
        let now = Instant::now();
        let mut cas = self
            .cas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !cas.contains_key(ca) && cas.len() >= MAX_INDEXED_CAS {
            let oldest = cas
                .iter()
                .min_by_key(|(_, s)| s.touched)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                cas.remove(&oldest);
            }
        }
        let state = cas
            .entry(ca.to_string())
            .or_insert_with(|| CaState::new(now));
        state.touched = now;
        f(state, now)
    }

    /// Claims the CA for one search; `None` while another one runs (it warms the index for this
    /// one, which should come back a moment later). The claim ends when the guard is dropped.
    pub(super) fn claim<'a>(&'a self, ca: &'a str) -> Option<Claim<'a>> {
        let free = self.with_ca(ca, |s, _| !std::mem::replace(&mut s.busy, true));
        // Not `then_some`: a claim built and dropped when the CA is busy would release it.
        free.then(|| Claim { index: self, ca })
    }

    pub(super) fn get(&self, ca: &str, serial: &str) -> Option<Entry> {
        self.with_ca(ca, |s, now| {
            s.entries
                .get(serial)
                .filter(|(_, at)| now.duration_since(*at) < ENTRY_TTL)
                .map(|(e, _)| e.clone())
        })
    }

    pub(super) fn insert(&self, ca: &str, serial: &str, entry: Entry) {
        self.with_ca(ca, |s, now| {
            if s.entries.len() >= MAX_ENTRIES_PER_CA && !s.entries.contains_key(serial) {
                s.entries
                    .retain(|_, (_, at)| now.duration_since(*at) < ENTRY_TTL);
            }
            if s.entries.len() >= MAX_ENTRIES_PER_CA && !s.entries.contains_key(serial) {
                // Drop the oldest eighth at once, so that a full index is not sorted on every insert.
                let mut ages: Vec<Instant> = s.entries.values().map(|(_, at)| *at).collect();
                ages.sort_unstable();
                let cut = ages[MAX_ENTRIES_PER_CA / 8];
                s.entries.retain(|_, (_, at)| *at > cut);
            }
            s.entries.insert(serial.to_string(), (entry, now));
        });
    }

    pub(super) fn remove(&self, ca: &str, serial: &str) {
        self.with_ca(ca, |s, _| {
            s.entries.remove(serial);
        });
    }

    /// Serials whose entry matches `wanted` within `window` (a few at most).
    pub(super) fn candidates(&self, ca: &str, wanted: &Sought, window: Window) -> Vec<String> {
        self.with_ca(ca, |s, now| {
            s.entries
                .iter()
                .filter(|(_, (e, at))| {
                    now.duration_since(*at) < ENTRY_TTL
                        && wanted.matches_entry(e)
                        && !window.excludes(e.not_before_ms)
                })
                .map(|(serial, _)| serial.clone())
                .take(MAX_CANDIDATES)
                .collect()
        })
    }

    pub(super) fn order(&self, ca: &str) -> Option<Order> {
        self.with_ca(ca, |s, _| s.order)
    }

    pub(super) fn set_order(&self, ca: &str, order: Order) {
        self.with_ca(ca, |s, _| s.order = Some(order));
    }

    pub(super) fn pages_hint(&self, ca: &str) -> Option<u32> {
        self.with_ca(ca, |s, _| s.pages_hint)
    }

    pub(super) fn set_pages_hint(&self, ca: &str, pages: u32) {
        self.with_ca(ca, |s, _| s.pages_hint = Some(pages));
    }

    /// Notes a list answer: remembers page `page` when it is not the last (so full: it changes only
    /// if certificates are removed), and forgets every page when the list shrank.
    pub(super) fn saw_page(
        &self,
        ca: &str,
        page: u32,
        total_pages: u32,
        total_cnt: i64,
        serials: &[String],
    ) {
        self.with_ca(ca, |s, now| {
            if total_cnt < s.total_cnt {
                s.pages.clear();
            }
            s.total_cnt = total_cnt;
            if s.order == Some(Order::Ascending) && !serials.is_empty() && page < total_pages {
                if s.pages.len() >= MAX_CACHED_PAGES {
                    s.pages
                        .retain(|_, (_, at)| now.duration_since(*at) < ENTRY_TTL);
                }
                if s.pages.len() < MAX_CACHED_PAGES {
                    s.pages.insert(page, (serials.to_vec(), now));
                }
            }
        });
    }

    /// A remembered full page.
    pub(super) fn page(&self, ca: &str, page: u32) -> Option<Vec<String>> {
        self.with_ca(ca, |s, now| {
            s.pages
                .get(&page)
                .filter(|(_, at)| now.duration_since(*at) < ENTRY_TTL)
                .map(|(serials, _)| serials.clone())
        })
    }

    pub(super) fn cursor(&self, ca: &str, id: &str) -> Option<Cursor> {
        self.with_ca(ca, |s, now| {
            s.cursors
                .retain(|_, (_, at)| now.duration_since(*at) < ENTRY_TTL);
            s.cursors.get(id).map(|(c, _)| *c)
        })
    }

    pub(super) fn set_cursor(&self, ca: &str, id: &str, cursor: Cursor) {
        self.with_ca(ca, |s, now| {
            if s.cursors.len() < MAX_ENTRIES_PER_CA || s.cursors.contains_key(id) {
                s.cursors.insert(id.to_string(), (cursor, now));
            }
        });
    }

    pub(super) fn clear_cursor(&self, ca: &str, id: &str) {
        self.with_ca(ca, |s, _| {
            s.cursors.remove(id);
        });
    }

    /// How many certificates the index holds, over every CA.
    #[must_use]
    pub fn len(&self) -> usize {
        self.cas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|s| s.entries.len())
            .sum()
    }

    /// Whether the index holds no certificate.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
