//! Whisper's `EnglishSpellingNormalizer`: British to American spellings, word by word, from
//! the 1,739-entry `english.json` shipped with openai-whisper (MIT, see `LICENSE` beside it).

use std::collections::HashMap;
use std::sync::LazyLock;

static MAPPING: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("english.json")).expect("english.json is valid JSON")
});

/// `" ".join(mapping.get(word, word) for word in s.split())`.
pub fn americanize(s: &str) -> String {
    let m = &*MAPPING;
    crate::metrics::words(s)
        .into_iter()
        .map(|w| m.get(w).map(String::as_str).unwrap_or(w))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn maps_british_spellings() {
        assert_eq!(
            super::americanize("the colour of  aluminium"),
            "the color of aluminum"
        );
    }
}
