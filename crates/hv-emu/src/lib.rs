//! hv-emu (placeholder while the crate is written).
