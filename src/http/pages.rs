//! The diagnostic pages (`/status`, `/status.json`, `/metrics`): rendering
//! each at most once per snapshot generation and second, whatever the
//! request rate. (Who may read them: `[http] diagnostics_from`, checked in
//! `routes` with [`crate::clients::in_networks`].)
//!
//! A page describes one snapshot and counters that move by the second, so
//! a copy younger than a second of the same generation is as good as a new
//! one. Under a flood of page requests floe renders each page about once a
//! second and copies bytes for the rest; while one request renders, the
//! others get the previous copy instead of rendering too.

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A cached page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/status`.
    Status,
    /// `/status.json`.
    StatusJson,
    /// `/metrics`.
    Metrics,
}

#[derive(Debug)]
struct Rendered {
    generation: u64,
    second: u64,
    body: Bytes,
}

#[derive(Debug, Default)]
struct Slot {
    current: ArcSwapOption<Rendered>,
    rendering: Mutex<()>,
}

/// The last rendering of each page.
#[derive(Debug, Default)]
pub struct PageCache {
    slots: [Slot; 3],
}

impl PageCache {
    /// `page` for snapshot `generation`: the cached copy if it is of this
    /// generation and second, else `render()`'s, kept for the next ones.
    /// While another request renders the page, a previous copy is returned
    /// rather than rendering it twice.
    pub fn get(&self, page: Page, generation: u64, render: impl FnOnce() -> Bytes) -> Bytes {
        let slot = &self.slots[page as usize];
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let cached = slot.current.load_full();
        if let Some(c) = &cached
            && c.generation == generation
            && c.second == second
        {
            return c.body.clone();
        }
        let Ok(_rendering) = slot.rendering.try_lock() else {
            if let Some(c) = cached {
                return c.body.clone();
            }
            return render();
        };
        let body = render();
        slot.current.store(Some(Arc::new(Rendered {
            generation,
            second,
            body: body.clone(),
        })));
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_page_is_rendered_once_per_generation_and_second() {
        let cache = PageCache::default();
        let renders = Cell::new(0);
        let render = || {
            renders.set(renders.get() + 1);
            Bytes::from_static(b"page")
        };
        for _ in 0..100 {
            assert_eq!(cache.get(Page::Status, 7, render), "page");
        }
        // Within one second (a second boundary may add one render).
        assert!(renders.get() <= 2, "{} renders", renders.get());
        let before = renders.get();
        cache.get(Page::Status, 8, render);
        assert_eq!(renders.get(), before + 1, "a new generation renders again");
        cache.get(Page::Metrics, 8, render);
        assert_eq!(renders.get(), before + 2, "each page has its own copy");
    }
}
