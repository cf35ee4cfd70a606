//! The wire frame every byte-stream mechanism uses (Pipe, the pipe-flavor Queue, Manager
//! RPC, Pool): a header with a magic number, the payload length and a CRC-32 of the
//! payload, then the payload. A torn or interleaved frame — two writers on one pipe end
//! with frames larger than PIPE_BUF — fails the magic, length or checksum check and is
//! reported as corrupt, never returned as data.

/// "IPCB" in little-endian.
pub const MAGIC: u32 = 0x4243_5049;
/// Header bytes: magic, length, checksum (u32 each).
pub const HEADER_LEN: usize = 12;
/// Largest payload accepted by default (a larger length field is taken as corruption).
pub const DEFAULT_MAX_PAYLOAD: usize = 256 << 20;

/// Why bytes read off a stream are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("corrupt frame: bad magic {found:#010x} (torn or interleaved write?)")]
    BadMagic { found: u32 },
    #[error("corrupt frame: length {len} exceeds the maximum {max}")]
    TooLong { len: usize, max: usize },
    #[error("corrupt frame: the stream ended {read} bytes into a {expected}-byte frame")]
    Truncated { read: usize, expected: usize },
    #[error("corrupt frame: checksum {found:#010x}, expected {expected:#010x} over {len} bytes (torn or interleaved write?)")]
    BadChecksum {
        expected: u32,
        found: u32,
        len: usize,
    },
}

/// Encodes a frame into one buffer, so that it goes out in one write(2): atomic on a pipe
/// when the whole frame is at most PIPE_BUF bytes.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A parsed header: the payload length and its expected checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub checksum: u32,
}

pub fn decode_header(bytes: &[u8; HEADER_LEN], max_payload: usize) -> Result<Header, FrameError> {
    let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let magic = word(0);
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let len = word(4) as usize;
    if len > max_payload {
        return Err(FrameError::TooLong {
            len,
            max: max_payload,
        });
    }
    Ok(Header {
        len,
        checksum: word(8),
    })
}

pub fn check_payload(header: Header, payload: &[u8]) -> Result<(), FrameError> {
    let found = crc32fast::hash(payload);
    if found != header.checksum {
        return Err(FrameError::BadChecksum {
            expected: header.checksum,
            found,
            len: payload.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_decode_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let frame = encode(&payload);
            let header = decode_header(frame[..HEADER_LEN].try_into().unwrap(), DEFAULT_MAX_PAYLOAD).unwrap();
            prop_assert_eq!(header.len, payload.len());
            prop_assert!(check_payload(header, &frame[HEADER_LEN..]).is_ok());
        }

        #[test]
        fn any_single_flipped_payload_bit_is_caught(payload in proptest::collection::vec(any::<u8>(), 1..500), bit in any::<usize>()) {
            let mut frame = encode(&payload);
            let bit = bit % (payload.len() * 8);
            frame[HEADER_LEN + bit / 8] ^= 1 << (bit % 8);
            let header = decode_header(frame[..HEADER_LEN].try_into().unwrap(), DEFAULT_MAX_PAYLOAD).unwrap();
            prop_assert!(check_payload(header, &frame[HEADER_LEN..]).is_err());
        }
    }

    #[test]
    fn bad_magic_and_length_are_caught() {
        let mut frame = encode(b"hello");
        frame[0] ^= 0xff;
        assert!(matches!(
            decode_header(frame[..HEADER_LEN].try_into().unwrap(), 100),
            Err(FrameError::BadMagic { .. })
        ));
        let frame = encode(&[0u8; 200]);
        assert!(matches!(
            decode_header(frame[..HEADER_LEN].try_into().unwrap(), 100),
            Err(FrameError::TooLong { len: 200, max: 100 })
        ));
    }
}
