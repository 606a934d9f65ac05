//! Scoring of record files: reports, groups, signatures (see `neko eval`).
