//! runner (being written).
