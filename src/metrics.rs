//! Metrics: alignment-based WER/CER, BLEU, chrF, GLEU and GEC edit scores.
