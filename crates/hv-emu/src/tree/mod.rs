//! The emulated device tree (being written).
