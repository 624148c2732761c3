//! interposer (being written).
