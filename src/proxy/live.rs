//! The context in effect: one [`Context`](crate::proxy::context::Context)
//! per loaded config, swapped whole by a reload (arc-swap). A connection
//! takes the context current when it is accepted and keeps it for its
//! tunnel or TLS; each request takes the newest one when it arrives
//! (`Context::latest`), so a rule added by a reload applies to the next
//! request, while requests in flight finish under the context they started
//! with.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// The value in effect, swapped whole.
#[derive(Debug)]
pub struct Live<T> {
    current: ArcSwap<T>,
}

impl<T> Live<T> {
    /// Puts `value` in effect.
    pub fn new(value: Arc<T>) -> Live<T> {
        Live {
            current: ArcSwap::new(value),
        }
    }

    /// The value in effect now.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Puts `next` in effect; returns the value it replaced.
    pub fn swap(&self, next: Arc<T>) -> Arc<T> {
        self.current.swap(next)
    }
}
