//! The stress message: who sent it, its sequence number, a body whose bytes and length
//! are derived from both, and a CRC-32 over all of it. The accountant re-derives the body,
//! so a message that passes the mechanism's own framing but was altered, spliced from two
//! messages, or attributed to the wrong producer is caught as corrupt.

use super::rng::mix;

/// producer (u32), seq (u64), body length (u32).
const HEAD: usize = 16;
/// Trailing CRC-32.
const TAIL: usize = 4;

/// The identity of a delivered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Stamp {
    pub(crate) producer: u32,
    pub(crate) seq: u64,
}

/// Why a delivered payload is not a message any producer sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MessageError {
    #[error("{0} bytes is shorter than a message header")]
    Short(usize),
    #[error("length field says {said} bytes of body, {got} present")]
    Length { said: usize, got: usize },
    #[error("checksum mismatch")]
    Checksum,
    #[error("body of producer {producer} seq {seq} differs from what that producer sends")]
    Body { producer: u32, seq: u64 },
}

fn key(producer: u32, seq: u64) -> u64 {
    mix(((producer as u64) << 40) ^ seq ^ 0x5354_5245_5353)
}

/// Body length of message (producer, seq): mostly 0..=max_body, and one message in 16
/// up to 16 × max_body, so that with the default 512 some frames exceed PIPE_BUF (4096)
/// and go out in several writes — a kill between them leaves a torn frame, which the
/// mechanism must refuse.
pub(crate) fn body_len(producer: u32, seq: u64, max_body: usize) -> usize {
    let k = key(producer, seq);
    let limit = if k.is_multiple_of(16) {
        max_body * 16
    } else {
        max_body
    };
    ((k >> 8) % (limit as u64 + 1)) as usize
}

fn body_byte(k: u64, i: usize) -> u8 {
    (k >> ((i % 8) * 8)) as u8 ^ (i / 8) as u8
}

/// Encodes message `seq` of `producer`.
pub(crate) fn encode(producer: u32, seq: u64, max_body: usize) -> Vec<u8> {
    let k = key(producer, seq);
    let len = body_len(producer, seq, max_body);
    let mut out = Vec::with_capacity(HEAD + len + TAIL);
    out.extend_from_slice(&producer.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend((0..len).map(|i| body_byte(k, i)));
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks a delivered payload completely and returns who sent it.
pub(crate) fn decode(bytes: &[u8]) -> Result<Stamp, MessageError> {
    if bytes.len() < HEAD + TAIL {
        return Err(MessageError::Short(bytes.len()));
    }
    let (content, crc) = bytes.split_at(bytes.len() - TAIL);
    if crc32fast::hash(content).to_le_bytes() != crc {
        return Err(MessageError::Checksum);
    }
    let producer = u32::from_le_bytes(content[0..4].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(content[4..12].try_into().expect("8 bytes"));
    let said = u32::from_le_bytes(content[12..16].try_into().expect("4 bytes")) as usize;
    let body = &content[HEAD..];
    if said != body.len() {
        return Err(MessageError::Length {
            said,
            got: body.len(),
        });
    }
    let k = key(producer, seq);
    if body.iter().enumerate().any(|(i, &b)| b != body_byte(k, i)) {
        return Err(MessageError::Body { producer, seq });
    }
    Ok(Stamp { producer, seq })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(producer in any::<u32>(), seq in any::<u64>(), max in 0usize..3000) {
            let m = encode(producer, seq, max);
            prop_assert_eq!(decode(&m), Ok(Stamp { producer, seq }));
        }

        #[test]
        fn any_flipped_bit_or_cut_is_caught(seq in any::<u64>(), bit in any::<usize>(), cut in any::<usize>()) {
            let m = encode(3, seq, 200);
            let mut flipped = m.clone();
            let bit = bit % (m.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&flipped).is_err());
            let cut = cut % m.len();
            prop_assert!(decode(&m[..cut]).is_err());
        }
    }

    #[test]
    fn a_spliced_message_is_caught() {
        let a = encode(1, 10, 64);
        let b = encode(2, 11, 64);
        let mut spliced = a[..a.len() / 2].to_vec();
        spliced.extend_from_slice(&b[b.len() / 2..]);
        assert!(decode(&spliced).is_err());
    }
}
