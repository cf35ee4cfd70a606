//! Bounded stress runs with fault injection. Not built yet (issue 9).
