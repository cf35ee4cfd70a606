//! Not built yet: see the issue that builds this family.
