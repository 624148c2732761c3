//! guest_mem (being written).
