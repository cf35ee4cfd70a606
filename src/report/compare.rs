//! Not built yet: the CI comparison (issue 10).
