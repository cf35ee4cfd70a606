//! The wire frame every byte-stream mechanism uses (Pipe, the pipe-flavor Queue, Manager
//! RPC, Pool): a header with a magic number, the payload length and a CRC-32 of the
//! payload, then the payload. A torn or interleaved frame — two writers on one pipe end
//! with frames larger than PIPE_BUF — fails the magic, length or checksum check and is
//! reported as corrupt, never returned as data.
//!
//! # Size limits
//!
//! * No frame carries more than [`MAX_PAYLOAD_LIMIT`] bytes: `try_encode` refuses a
//!   larger payload (the length field is a u32; a silent `as u32` would have cut a 4 GiB
//!   message's length and desynchronised the stream).
//! * Every reader has its own maximum (a pipe end: [`DEFAULT_MAX_PAYLOAD`] unless set; the
//!   Manager: 16 MiB unless configured), checked against the header before anything is
//!   read; a configured maximum is itself checked with `check_max_payload`.
//! * A header is only a claim: a reader allocates as the payload's bytes arrive, in steps
//!   of [`READ_CHUNK`] growing at most to twice what has arrived (`next_capacity`),
//!   never the claimed length up front. A peer that sends a header claiming 200 MiB and
//!   stops costs the reader 64 KiB, not 200 MiB.

/// "IPCB" in little-endian.
pub const MAGIC: u32 = 0x4243_5049;
/// Header bytes: magic, length, checksum (u32 each).
pub const HEADER_LEN: usize = 12;
/// Largest payload accepted by default (a larger length field is taken as corruption).
pub const DEFAULT_MAX_PAYLOAD: usize = 256 << 20;
/// The most any mechanism may be configured to accept in one message, and the most
/// `try_encode` puts in one frame: 1 GiB. The length field could carry up to 4 GiB − 1;
/// the cap is lower because one message is held whole in memory by both ends (and the
/// pipe-flavor queue stores its `max_message` in shared memory as a u64 any process may
/// read). Check a configured maximum with `check_max_payload`.
pub const MAX_PAYLOAD_LIMIT: usize = 1 << 30;
/// The step in which a reader grows a payload buffer as bytes arrive (see
/// `next_capacity`).
pub const READ_CHUNK: usize = 64 << 10;

/// Why bytes read off a stream are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("corrupt frame: bad magic {found:#010x} (torn or interleaved write?)")]
    /// The first bytes are not the frame magic: the reader is not at a frame boundary.
    BadMagic {
        /// The four bytes read instead.
        found: u32,
    },
    #[error("corrupt frame: length {len} exceeds the maximum {max}")]
    /// A header announcing more bytes than the reader accepts (a torn header, or a
    /// writer with a larger maximum): refused before anything is allocated.
    TooLong {
        /// The length the header announced.
        len: usize,
        /// The reader's maximum payload.
        max: usize,
    },
    /// A payload too large for any frame (see [`MAX_PAYLOAD_LIMIT`]).
    #[error("payload of {len} bytes exceeds the {max}-byte maximum a frame can carry")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The maximum it exceeds.
        max: usize,
    },
    /// A configured maximum above [`MAX_PAYLOAD_LIMIT`].
    #[error("a maximum message size of {requested} bytes exceeds the limit of {limit} bytes")]
    LimitTooHigh {
        /// The maximum asked for.
        requested: usize,
        /// [`MAX_PAYLOAD_LIMIT`].
        limit: usize,
    },
    #[error("corrupt frame: the stream ended {read} bytes into a {expected}-byte frame")]
    /// The stream ended inside a frame (its writer died or closed mid-write).
    Truncated {
        /// Bytes of the frame read before the end.
        read: usize,
        /// The frame's full length.
        expected: usize,
    },
    #[error("corrupt frame: checksum {found:#010x}, expected {expected:#010x} over {len} bytes (torn or interleaved write?)")]
    /// The payload's CRC-32 does not match its header: bytes of another write got in.
    BadChecksum {
        /// The checksum the header carries.
        expected: u32,
        /// The checksum of the bytes read.
        found: u32,
        /// The payload's length.
        len: usize,
    },
}

/// Encodes a frame into one buffer, so that it goes out in one write(2): atomic on a pipe
/// when the whole frame is at most PIPE_BUF bytes. A payload over [`MAX_PAYLOAD_LIMIT`]
/// is [`FrameError::TooLarge`].
pub(crate) fn try_encode(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = length_field(payload.len())?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// As `try_encode`, for payloads known to be small (tests, scenarios).
///
/// # Panics
///
/// On a payload over [`MAX_PAYLOAD_LIMIT`] — never a frame with a cut length field.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    try_encode(payload).unwrap_or_else(|e| panic!("frame::encode: {e}"))
}

/// The header's length field for a payload of `len` bytes: an error above
/// [`MAX_PAYLOAD_LIMIT`] (which also keeps it within the field's u32), never a silent
/// truncation.
pub(crate) fn length_field(len: usize) -> Result<u32, FrameError> {
    if len > MAX_PAYLOAD_LIMIT {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_PAYLOAD_LIMIT,
        });
    }
    u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len,
        max: MAX_PAYLOAD_LIMIT,
    })
}

/// Checks a configured maximum message size (a pipe end's, a queue's `max_message`, a
/// Manager's): Ok(max) when at most [`MAX_PAYLOAD_LIMIT`], else
/// [`FrameError::LimitTooHigh`].
pub(crate) fn check_max_payload(max: usize) -> Result<usize, FrameError> {
    if max > MAX_PAYLOAD_LIMIT {
        return Err(FrameError::LimitTooHigh {
            requested: max,
            limit: MAX_PAYLOAD_LIMIT,
        });
    }
    Ok(max)
}

/// The capacity a reader gives its payload buffer once `received` bytes of a `len`-byte
/// payload have arrived and filled it: at least one [`READ_CHUNK`], at most twice what
/// has arrived, never more than `len`. Memory follows the bytes a peer actually sent, not
/// the length its header claims.
pub(crate) fn next_capacity(received: usize, len: usize) -> usize {
    received.saturating_mul(2).max(READ_CHUNK).min(len)
}

/// A parsed header: the payload length and its expected checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: usize,
    pub(crate) checksum: u32,
}

pub(crate) fn decode_header(
    bytes: &[u8; HEADER_LEN],
    max_payload: usize,
) -> Result<Header, FrameError> {
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

pub(crate) fn check_payload(header: Header, payload: &[u8]) -> Result<(), FrameError> {
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
    fn a_length_the_header_cannot_carry_is_an_error_not_a_truncation() {
        assert_eq!(length_field(0), Ok(0));
        assert_eq!(
            length_field(MAX_PAYLOAD_LIMIT),
            Ok(MAX_PAYLOAD_LIMIT as u32)
        );
        for len in [u32::MAX as usize + 1, (4usize << 30) + 5, usize::MAX] {
            let got = length_field(len);
            assert!(
                matches!(got, Err(FrameError::TooLarge { .. })),
                "length {len}: {got:?}"
            );
        }
    }

    #[test]
    fn try_encode_refuses_what_no_frame_may_carry_and_configured_maxima_are_checked() {
        assert!(matches!(
            length_field(MAX_PAYLOAD_LIMIT + 1),
            Err(FrameError::TooLarge {
                max: MAX_PAYLOAD_LIMIT,
                ..
            })
        ));
        assert_eq!(check_max_payload(16 << 20), Ok(16 << 20));
        assert_eq!(check_max_payload(MAX_PAYLOAD_LIMIT), Ok(MAX_PAYLOAD_LIMIT));
        let err = check_max_payload(MAX_PAYLOAD_LIMIT + 1).unwrap_err();
        assert!(
            matches!(err, FrameError::LimitTooHigh { requested, limit } if requested == MAX_PAYLOAD_LIMIT + 1 && limit == MAX_PAYLOAD_LIMIT),
            "{err}"
        );
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        assert_eq!(try_encode(b"ok").unwrap(), encode(b"ok"));
    }

    #[test]
    fn a_reader_buffer_grows_with_the_bytes_that_arrived_not_with_the_claim() {
        let claim = 200 << 20;
        let mut capacity = next_capacity(0, claim);
        assert_eq!(capacity, READ_CHUNK, "the first step is one chunk");
        // Filling the buffer each time, as a peer that does send the bytes would.
        let mut steps = 0;
        while capacity < claim {
            let received = capacity;
            let next = next_capacity(received, claim);
            assert!(next > capacity, "grows");
            assert!(
                next <= (2 * received).max(READ_CHUNK),
                "{received} -> {next}"
            );
            capacity = next;
            steps += 1;
        }
        assert_eq!(capacity, claim, "never past the claim");
        assert!(steps <= 12, "doubling: {steps} steps to 200 MiB");
        assert_eq!(
            next_capacity(0, 10),
            10,
            "a small frame: exactly its length"
        );
        assert_eq!(next_capacity(usize::MAX / 2 + 1, usize::MAX), usize::MAX);
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
