//! Data path tests (being written).
