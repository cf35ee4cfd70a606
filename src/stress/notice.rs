//! A notice board in shared memory for targets whose parent moves the workers from one
//! instance of a mechanism to the next (a new barrier after a kill broke the last one, a
//! new Event or JoinableQueue per round): the parent publishes (round, bytes), e.g. a
//! segment name or a serialized handle; workers read it with a sequence check, so a read
//! that overlapped a publish is retried, never half old and half new.

use super::StressError;
use crate::sys::shm::ShmSafe;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

const WORDS: usize = 96;
/// Largest publication, bytes.
pub(crate) const NOTICE_BYTES: usize = WORDS * 8;

#[repr(C)]
pub(crate) struct Notice {
    /// 0 while a publish is in progress (or before the first); rounds start at 1 and only
    /// grow, so a reader that sees the same round before and after read one publication.
    round: AtomicU64,
    len: AtomicU64,
    words: [AtomicU64; WORDS],
}

// SAFETY: atomics only; all-zero is "nothing published".
unsafe impl ShmSafe for Notice {}

impl Notice {
    /// Publishes `data` as `round` (greater than every round before; one publisher).
    pub(crate) fn publish(&self, round: u64, data: &[u8]) -> Result<(), StressError> {
        if data.len() > NOTICE_BYTES || round == 0 {
            return Err(StressError::Failed(format!(
                "notice of {} bytes for round {round}: at most {NOTICE_BYTES} bytes, round > 0",
                data.len()
            )));
        }
        self.round.store(0, SeqCst);
        self.len.store(data.len() as u64, SeqCst);
        for (word, chunk) in self.words.iter().zip(data.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), SeqCst);
        }
        self.round.store(round, SeqCst);
        Ok(())
    }

    /// The round published now, without its bytes (0: none, or a publish in progress).
    pub(crate) fn round(&self) -> u64 {
        self.round.load(SeqCst)
    }

    /// The current publication, or None while none is complete.
    pub(crate) fn read(&self) -> Option<(u64, Vec<u8>)> {
        let before = self.round.load(SeqCst);
        if before == 0 {
            return None;
        }
        let len = (self.len.load(SeqCst) as usize).min(NOTICE_BYTES);
        let mut out = Vec::with_capacity(len);
        for word in self.words.iter().take(len.div_ceil(8)) {
            out.extend_from_slice(&word.load(SeqCst).to_le_bytes());
        }
        out.truncate(len);
        (self.round.load(SeqCst) == before).then_some((before, out))
    }
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the machine.
pub(crate) fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::shm::Shared;

    #[test]
    fn a_notice_reads_back_whole() {
        let n: Shared<Notice> = Shared::create("stress-notice-test", 0).unwrap();
        assert_eq!(n.read(), None);
        n.publish(1, b"hello").unwrap();
        assert_eq!(n.read(), Some((1, b"hello".to_vec())));
        let long = vec![7u8; NOTICE_BYTES];
        n.publish(2, &long).unwrap();
        assert_eq!(n.read(), Some((2, long)));
        assert!(n.publish(3, &[0; NOTICE_BYTES + 1]).is_err());
    }
}
