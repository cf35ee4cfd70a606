//! The mechanisms under test, one module per family with its flavors inside.
