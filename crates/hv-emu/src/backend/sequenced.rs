//! The sequenced payload of the generator's `sequenced` mode: frame n's L4 payload is n (8 bytes, little-endian)
//! followed by a pattern derived from n, so a receiver checks every byte of every frame with [`check_sequenced`]
//! and knows which frame it was.

/// Added per payload word so that words of one frame differ (odd: distinct for every index).
const STRIDE: u64 = 0x9E37_79B9_7F4A_7C15;

/// Word `i` of frame `seq`'s pattern: a SplitMix64 mix of `seq` plus `i` strides.
pub fn sequence_word(seq: u64, i: u64) -> u64 {
    let mut z = seq.wrapping_add(STRIDE);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).wrapping_add(i.wrapping_mul(STRIDE))
}

/// Write frame `seq`'s payload: the little-endian byte stream `seq`, `sequence_word(seq, 0)`,
/// `sequence_word(seq, 1)`, ... cut at `payload.len()` (shorter than 8 bytes: `seq`'s low bytes only).
pub fn fill_sequenced(payload: &mut [u8], seq: u64) {
    let head = payload.len().min(8);
    payload[..head].copy_from_slice(&seq.to_le_bytes()[..head]);
    let Some(rest) = payload.get_mut(8..) else {
        return;
    };
    let (words, tail) = rest.as_chunks_mut::<8>();
    let mut w = sequence_word(seq, 0);
    for chunk in words {
        *chunk = w.to_le_bytes();
        w = w.wrapping_add(STRIDE);
    }
    let n = tail.len();
    tail.copy_from_slice(&w.to_le_bytes()[..n]);
}

/// A payload that is not what [`fill_sequenced`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// Fewer than 8 bytes: no room for the sequence number.
    #[error("payload of {len} bytes is too short to carry a sequence number")]
    TooShort {
        /// Payload length.
        len: usize,
    },
    /// A byte differs from frame `seq`'s pattern.
    #[error("payload byte {offset} differs from frame {seq}'s pattern")]
    Mismatch {
        /// Sequence number read from the payload.
        seq: u64,
        /// First differing byte.
        offset: usize,
    },
}

/// Check every byte of a payload written by [`fill_sequenced`] and return its sequence number.
pub fn check_sequenced(payload: &[u8]) -> Result<u64, SequenceError> {
    let Some((seq, rest)) = payload.split_first_chunk::<8>() else {
        return Err(SequenceError::TooShort { len: payload.len() });
    };
    let seq = u64::from_le_bytes(*seq);
    let (words, tail) = rest.as_chunks::<8>();
    let mut w = sequence_word(seq, 0);
    for (k, chunk) in words.iter().enumerate() {
        if *chunk != w.to_le_bytes() {
            let byte = chunk
                .iter()
                .zip(w.to_le_bytes())
                .take_while(|(a, b)| *a == b)
                .count();
            return Err(SequenceError::Mismatch {
                seq,
                offset: 8 + 8 * k + byte,
            });
        }
        w = w.wrapping_add(STRIDE);
    }
    let expect = w.to_le_bytes();
    if let Some(byte) = tail.iter().zip(expect).position(|(a, b)| *a != b) {
        return Err(SequenceError::Mismatch {
            seq,
            offset: 8 + 8 * words.len() + byte,
        });
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequenced_payload_round_trips_and_every_byte_is_checked() {
        for len in [8usize, 9, 15, 16, 17, 100, 1460] {
            let mut p = vec![0u8; len];
            fill_sequenced(&mut p, 77);
            assert_eq!(check_sequenced(&p), Ok(77));
            for i in 8..len {
                let mut q = p.clone();
                q[i] ^= 0x10;
                assert_eq!(
                    check_sequenced(&q),
                    Err(SequenceError::Mismatch { seq: 77, offset: i }),
                    "len {len}"
                );
            }
            // Another frame's payload (or a changed sequence number) does not pass as this one.
            let mut other = vec![0u8; len];
            fill_sequenced(&mut other, 78);
            other[..8].copy_from_slice(&77u64.to_le_bytes());
            if len > 8 {
                assert!(check_sequenced(&other).is_err());
            }
        }
        assert_eq!(
            check_sequenced(&[1, 2, 3]),
            Err(SequenceError::TooShort { len: 3 })
        );
        let mut short = [0u8; 5];
        fill_sequenced(&mut short, 0x0102_0304_0506);
        assert_eq!(short, [6, 5, 4, 3, 2]);
    }
}
