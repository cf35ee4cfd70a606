//! Controlled interleavings across processes: yield points and a turnstile.
