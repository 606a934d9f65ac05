//! Text normalisers for scoring, as named, versioned, composable stages.
