//! PLACEHOLDER: topic definitions (a teammate is writing this module).
