//! vmbus-uio (placeholder while the crate is written).
