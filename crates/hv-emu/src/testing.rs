//! Scripted fake guest (being written).
