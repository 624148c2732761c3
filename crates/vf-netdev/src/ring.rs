//! Validation of values read from kernel-shared rings. Every index, length, offset and address read from a
//! TPACKET block or an XDP ring goes through one of these before it is used; a bad value is an error.
